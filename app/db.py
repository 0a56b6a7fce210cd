"""SQLite database: connection setup (WAL, foreign keys, busy timeout), ORM tables, migrations.

The schema is created and changed only by the ordered MIGRATIONS below (raw DDL, so an old
migration never changes meaning when the ORM classes grow); `schema_version` records how far a
database has been brought. The ORM classes map the tables the migrations made.
"""
from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    Connection, Engine, Float, ForeignKey, Integer, String, Text, create_engine, event, text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.errors import AppError, NotFound

BUSY_TIMEOUT_MS = 30_000


class JSONText(TypeDecorator):
    """A JSON value stored as TEXT."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, default=_plain)

    def process_result_value(self, value: str | None, dialect) -> Any:
        return None if value is None else json.loads(value)


def _plain(value: Any) -> Any:
    """JSON for the odd values engines put in timings (numpy / torch scalars, paths, tuples)."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


class Base(DeclarativeBase):
    pass


SQLITE_INTEGERS = range(-2**63, 2**63)    # what a key can be; SQLite raises OverflowError past it


def get_row(s: Session, model: type, row_id: int, what: str):
    """The `model` row with primary key `row_id`, or NotFound("<what> <id> does not exist")."""
    row = s.get(model, row_id) if row_id in SQLITE_INTEGERS else None
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    documents: Mapped[list["Document"]] = relationship(
        back_populates="workspace", order_by="Document.id", passive_deletes=True)


class Document(Base):
    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String)
    title: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    unit: Mapped[str] = mapped_column(String)
    content_hash: Mapped[str] = mapped_column(String)
    text_hash: Mapped[str] = mapped_column(String)
    size_bytes: Mapped[int] = mapped_column(Integer)
    page_count: Mapped[int] = mapped_column(Integer)
    outline: Mapped[list | None] = mapped_column(JSONText)
    notes: Mapped[list | None] = mapped_column(JSONText)
    added_at: Mapped[float] = mapped_column(Float, default=time.time)
    reader_version: Mapped[int] = mapped_column(Integer, default=0)   # ingest.READER_VERSION that read it
    workspace: Mapped[Workspace] = relationship(back_populates="documents")
    pages: Mapped[list["Page"]] = relationship(order_by="Page.number", passive_deletes=True)


class Page(Base):
    __tablename__ = "pages"
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str | None] = mapped_column(String)
    text: Mapped[str] = mapped_column(Text)
    # What OCR read on the page, when it was run there (ingest.ocr.OcrPage.to_json: the engine, the
    # lines), so that a re-read does not OCR it again; loaded only when asked for
    ocr: Mapped[dict | None] = mapped_column(JSONText, deferred=True)


class TokenCount(Base):
    """Tokens of a document's text for one tokenizer (so sizes are known without re-tokenizing)."""

    __tablename__ = "token_counts"
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    tokenizer: Mapped[str] = mapped_column(String, primary_key=True)
    tokens: Mapped[int] = mapped_column(Integer)


class Chat(Base):
    __tablename__ = "chats"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String, default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    messages: Mapped[list["Message"]] = relationship(order_by="Message.id", passive_deletes=True)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String)
    text: Mapped[str] = mapped_column(Text)
    engine: Mapped[str | None] = mapped_column(String)
    timings: Mapped[dict | None] = mapped_column(JSONText)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    reasoning: Mapped[str | None] = mapped_column(Text)       # a reasoning model's <think> block
    citations: Mapped[list["Citation"]] = relationship(
        order_by="Citation.position", passive_deletes=True)


class Citation(Base):
    __tablename__ = "citations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    doc_index: Mapped[int] = mapped_column(Integer)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String)
    page: Mapped[int | None] = mapped_column(Integer)
    page_label: Mapped[str | None] = mapped_column(String)
    quote: Mapped[str] = mapped_column(Text)
    verified: Mapped[bool] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    passage: Mapped[str] = mapped_column(Text)
    start: Mapped[int | None] = mapped_column(Integer)
    end: Mapped[int | None] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String, default="page")    # of the cited document: page, slide, ...


class FailedUpload(Base):
    """A file dropped into a workspace that could not be added while nobody was watching (its page
    was closed or reloaded first): kept until dismissed, so the failure reaches the user."""

    __tablename__ = "failed_uploads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String)
    reason: Mapped[str] = mapped_column(String)
    message: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[float] = mapped_column(Float, default=time.time)


class KeptUpload(Base):
    """A file dropped into a workspace, its original kept under files/, not yet read into a document
    (or refused): one a stopped server was reading is read again at its next start."""

    __tablename__ = "kept_uploads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String)
    content_hash: Mapped[str] = mapped_column(String)
    kept_at: Mapped[float] = mapped_column(Float, default=time.time)


# ---------------------------------------------------------------------------------------------
# Migrations: append only. Each runs in one transaction with the version bump.

def _migration_1(conn: Connection) -> None:
    """First release: workspaces, documents, pages, token counts, chats, messages, citations."""
    for ddl in (
        """CREATE TABLE workspaces (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL)""",
        """CREATE TABLE documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            filename TEXT NOT NULL,
            title TEXT NOT NULL,
            kind TEXT NOT NULL,
            unit TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            page_count INTEGER NOT NULL,
            outline TEXT,
            notes TEXT,
            added_at REAL NOT NULL,
            UNIQUE (workspace_id, content_hash))""",
        "CREATE INDEX documents_content_hash ON documents(content_hash)",
        """CREATE TABLE pages (
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            label TEXT,
            text TEXT NOT NULL,
            PRIMARY KEY (document_id, number))""",
        """CREATE TABLE token_counts (
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            tokenizer TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            PRIMARY KEY (document_id, tokenizer))""",
        """CREATE TABLE chats (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            created_at REAL NOT NULL)""",
        "CREATE INDEX chats_workspace ON chats(workspace_id)",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            text TEXT NOT NULL,
            engine TEXT,
            timings TEXT,
            created_at REAL NOT NULL)""",
        "CREATE INDEX messages_chat ON messages(chat_id)",
        """CREATE TABLE citations (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            doc_index INTEGER NOT NULL,
            document_id INTEGER REFERENCES documents(id) ON DELETE SET NULL,
            filename TEXT NOT NULL,
            page INTEGER,
            page_label TEXT,
            quote TEXT NOT NULL,
            verified INTEGER NOT NULL,
            score REAL NOT NULL,
            passage TEXT NOT NULL,
            start INTEGER,
            "end" INTEGER)""",
        "CREATE INDEX citations_message ON citations(message_id)",
        "CREATE INDEX citations_document ON citations(document_id)",
    ):
        conn.exec_driver_sql(ddl)


def _migration_2(conn: Connection) -> None:
    """Reasoning models: an answer's <think> block, kept apart from its text."""
    conn.exec_driver_sql("ALTER TABLE messages ADD COLUMN reasoning TEXT")


def _migration_3(conn: Connection) -> None:
    """Slides, sections and parts: a citation names its document's unit (older ones cite pages)."""
    conn.exec_driver_sql("ALTER TABLE citations ADD COLUMN unit TEXT NOT NULL DEFAULT 'page'")


def _migration_4(conn: Connection) -> None:
    """Files that failed to be added after their page went away, until dismissed."""
    conn.exec_driver_sql("""CREATE TABLE failed_uploads (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
        filename TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        failed_at REAL NOT NULL)""")
    conn.exec_driver_sql("CREATE INDEX failed_uploads_workspace ON failed_uploads(workspace_id)")


def _migration_5(conn: Connection) -> None:
    """The version of the reader that read each document (0: one before the stamp), so that a
    better reader reads stored documents again."""
    conn.exec_driver_sql("ALTER TABLE documents ADD COLUMN reader_version INTEGER NOT NULL DEFAULT 0")


def _migration_6(conn: Connection) -> None:
    """What OCR read on a page (NULL: no OCR there, or a page stored before), so that a re-read
    does not OCR it again."""
    conn.exec_driver_sql("ALTER TABLE pages ADD COLUMN ocr TEXT")


def _migration_7(conn: Connection) -> None:
    """Uploads kept until read, so that a server stopped while reading one reads it at its next start."""
    conn.exec_driver_sql("""CREATE TABLE kept_uploads (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
        filename TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        kept_at REAL NOT NULL)""")
    conn.exec_driver_sql("CREATE INDEX kept_uploads_workspace ON kept_uploads(workspace_id)")


MIGRATIONS: list[Callable[[Connection], None]] = [
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5, _migration_6,
    _migration_7]
SCHEMA_VERSION = len(MIGRATIONS)


def is_disk_full(exc: BaseException) -> bool:
    """Whether a database error (or the OSError under it) says the disk is full."""
    orig = getattr(exc, "orig", exc)
    return (getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or (isinstance(orig, OSError) and orig.errno == errno.ENOSPC))


class SchemaError(AppError):
    """The database was written by a newer jambadocs (or is not ours)."""


def _on_connect(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None      # the driver's implicit BEGIN is off; see "begin" below
    cur = dbapi_conn.cursor()
    # First (a new database's first write, even journal_mode, fixes the mode): a new database gives
    # freed pages back in steps (reclaim_space); an older one is converted by the VACUUM that
    # reclaim_space runs once there is room for it.
    cur.execute("PRAGMA auto_vacuum = INCREMENTAL")
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    # A deleted document's text is zeroed in the file, whatever this SQLite's build default (and
    # an older database, not yet auto-vacuumed, keeps its freed pages). On a full disk a delete is
    # retried with FAST (Services.delete_rows), which writes 9-14x less (bench/storage_space.py).
    cur.execute("PRAGMA secure_delete = ON")
    cur.close()


def open_engine(path: Path) -> Engine:
    """An SQLAlchemy engine on `path`, with pragmas set on every connection, migrated to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _on_connect)
    # Every transaction takes the write lock at its start (BEGIN IMMEDIATE), so two writers queue
    # on busy_timeout instead of failing when a read transaction tries to become a write one.
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        migrate(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise SchemaError(f"{path}: cannot use this database ({exc.orig})") from None
    return engine


def schema_version(conn: Connection) -> int:
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.exec_driver_sql("SELECT max(version) FROM schema_version").first()
    return int(row[0] or 0)


def migrate(engine: Engine) -> int:
    """Apply the migrations this database lacks, each in its own transaction. Returns the version."""
    with engine.begin() as conn:
        version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"database {engine.url.database} has schema version {version}, newer than this "
            f"jambadocs understands ({SCHEMA_VERSION}); upgrade jambadocs")
    for number in range(version + 1, SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            if schema_version(conn) >= number:     # another process got there first
                continue
            MIGRATIONS[number - 1](conn)
            conn.execute(text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": number})
    return SCHEMA_VERSION


RECLAIM_STEP_PAGES = 2048        # 8 MiB of 4 KiB pages per step


def reclaim_space(engine: Engine) -> int:
    """Give the pages of deleted rows back to the file system; returns the bytes the database and
    its WAL shrank by.

    A database in incremental auto-vacuum mode (new ones are) is shrunk RECLAIM_STEP_PAGES at a
    time, each step one short write transaction and a checkpoint, so a writer in another process
    waits one step at most, and the WAL, which a full disk has little room for, holds one step at
    a time (steps down to 1/64 of that when even one does not fit). An older database is
    converted by one VACUUM once a quarter of it is free and its disk has room for two copies;
    until then later adds reuse its free pages."""
    path = Path(engine.url.database)
    before = _bytes_on_disk(path)
    raw = engine.raw_connection()
    try:
        con = raw.driver_connection
        con.execute("PRAGMA busy_timeout = 1000")      # a checkpoint waits on readers: not for long
        free, pages, page_size, mode = (con.execute(f"PRAGMA {p}").fetchone()[0]
                                        for p in ("freelist_count", "page_count", "page_size", "auto_vacuum"))
        if mode == 2:
            step = RECLAIM_STEP_PAGES
            while free:
                try:
                    con.executescript(f"PRAGMA incremental_vacuum({step});")
                except sqlite3.OperationalError as exc:     # on a full disk, a step's WAL frames
                    if not is_disk_full(exc) or step <= RECLAIM_STEP_PAGES // 64:   # may not fit:
                        raise                                                  # smaller steps
                    step //= 4
                    continue
                con.execute("PRAGMA wal_checkpoint(PASSIVE)")
                free = con.execute("PRAGMA freelist_count").fetchone()[0]
        elif free and free * 4 >= pages and shutil.disk_usage(path.parent).free > 2 * pages * page_size:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            con.executescript("VACUUM;")                # auto_vacuum = INCREMENTAL from _on_connect
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.driver_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        raw.close()
    return before - _bytes_on_disk(path)


def checkpoint(engine: Engine) -> None:
    """Copy the WAL into the database (PASSIVE: waits for no reader), so that the next write
    starts the WAL over instead of growing it."""
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        raw.close()


def _bytes_on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session, one transaction: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session
