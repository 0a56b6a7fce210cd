"""Persistent store of hybrid model states at document boundaries.

A prompt is ``[preamble][doc 1]..[doc N][tail]``. The state after each document
boundary is stored once, as a chain: entry *k* is keyed by
``sha256(model fingerprint, prompt format version, key of entry k-1, token ids
of segment k)`` (the preamble is the root segment, parent key ``""``; the answerer's
"fingerprint" also names the device type and kernels, app.answerers.jamba.computed_by),
so a key names exactly one prefix of one model computed one way, and a changed
document, order, model or prompt format simply misses.

Each entry holds a *delta*: the KV rows of the tokens since its parent entry plus
the Mamba (conv + SSM) state at its end, i.e. ``state.since(parent n_tokens)``;
a prefix is restored by joining the deltas along the parent links. This keeps
stored bytes linear in the cached tokens (whole states per boundary would grow
quadratically with the number of documents) -- see docs/cache.md for the
measurement. The caller may skip boundaries (an entry then covers several
segments, its parent being the last stored boundary before it): the store finds
the deepest stored key of a chain whose parent links stay inside that chain.

Layout under ``folder`` (``<data dir>/states``)::

    index.sqlite          metadata (SQLAlchemy, WAL): one row per entry; and, per model and
                          document set too large for the context, the pages last kept
    blobs/ab/<key>.state  the bytes of ``HybridState.to_bytes()``
    .lock                 flock: writers share it, start-up cleanup takes it alone

A blob is written to a temporary file, fsync'd, renamed into place, the folder
fsync'd, and only then recorded in SQLite, so a crash at any point leaves at
worst an unrecorded file (never read, removed at the next start) and never a
row pointing to partial bytes. Every read checks the blob's checksum against the
row (xxh3-128; sha256 in rows written before 2026-11-28, still checked as such); a damaged, missing or refused blob is dropped together with its
descendants (they are unreachable without it) and the caller recomputes.

Eviction: a byte budget, least recently used first, among leaves only: an entry
is evicted only after all its children, since a child cannot be restored without
its parent (dropping a damaged entry takes its descendants with it for the same
reason).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import xxhash
from sqlalchemy import Engine, Float, Integer, LargeBinary, String, Text, create_engine, delete, event, exists, func, select, update
from sqlalchemy.exc import DatabaseError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BLOB_SUFFIX = ".state"
TMP_SUFFIX = ".tmp"
CHECKSUM_PREFIX = "xxh3_128:"
# Free space a store leaves on its disk for what is not disposable (documents, answers): an entry
# that would leave less is stored only after older entries make room, else not at all.
MIN_FREE_BYTES = 512 << 20


class StateStoreError(RuntimeError):
    """The store folder cannot be used (names the path and the reason)."""


class NewerStoreError(StateStoreError):
    """The index was written by a newer jambadocs (its schema is above ours)."""


class _Base(DeclarativeBase):
    pass


class StateEntry(_Base):
    """One stored document-boundary state (the delta of one segment)."""

    __tablename__ = "state_entries"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_key: Mapped[str] = mapped_column(String(64), index=True)  # "" for the root (preamble)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    depth: Mapped[int] = mapped_column(Integer)  # 0 = preamble, k = after document k
    offset: Mapped[int] = mapped_column(Integer)  # prefix tokens before this segment
    n_tokens: Mapped[int] = mapped_column(Integer)  # prefix tokens at the end of this segment
    nbytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))  # the blob's checksum: "xxh3_128:<hex>", or sha256 hex (older rows)
    created: Mapped[float] = mapped_column(Float)
    last_used: Mapped[float] = mapped_column(Float, index=True)


class PageSelection(_Base):
    """The pages an answer kept of a document set too large for the context, so that the next
    question on that set can keep them too (and reuse their stored states) when they serve it."""

    __tablename__ = "page_selections"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)   # model + document set digest
    pages: Mapped[str] = mapped_column(Text)  # JSON: per document, the kept physical page numbers
    last_used: Mapped[float] = mapped_column(Float, index=True)


class TextTokenCount(_Base):
    """How many tokens one tokenizer makes of one text (a page as the prompt shows it), by the text's
    digest: a question on a set larger than the context counts every page, and a new process (or
    the next question past the in-memory counts) finds them here instead of tokenising the set."""

    __tablename__ = "text_token_counts"
    tokenizer: Mapped[str] = mapped_column(String(64), primary_key=True)   # digest of the tokenizer
    digest: Mapped[bytes] = mapped_column(LargeBinary(20), primary_key=True)   # sha1 of the text
    tokens: Mapped[int] = mapped_column(Integer)
    created: Mapped[float] = mapped_column(Float, index=True)


class _Meta(_Base):
    __tablename__ = "store_meta"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class _State(Protocol):
    n_tokens: int

    def to_bytes(self) -> bytes: ...
    def since(self, pos: int) -> "_State": ...
    def join(self, segment: "_State", room: int = 0) -> "_State": ...
    def with_room(self, room: int) -> "_State": ...


class _Engine(Protocol):
    fingerprint: str

    def state_from_bytes(self, blob: bytes) -> _State: ...


def chain_keys(fingerprint: str, format_version: int | str, segments: Sequence[Sequence[int]],
               parent: str = "") -> list[str]:
    """Keys of the prefixes ``segments[:1]``, ``segments[:2]``, ... (segment 0 = preamble), after
    the prefix whose key is `parent` ("": none)."""
    keys: list[str] = []
    for ids in segments:
        h = hashlib.sha256()
        for field in (b"jambadocs-state-v1", fingerprint.encode(), str(format_version).encode(), parent.encode()):
            h.update(len(field).to_bytes(8, "little"))
            h.update(field)
        tokens = np.asarray(ids, dtype="<u4").tobytes()  # token ids as little-endian uint32
        h.update(len(tokens).to_bytes(8, "little"))
        h.update(tokens)
        parent = h.hexdigest()
        keys.append(parent)
    return keys


@dataclass
class RestoredPrefix:
    """The longest stored prefix of a chain, joined into one state."""

    state: Any  # engine HybridState, or None when nothing was stored
    depth: int  # chain segments covered (0 = none)
    n_tokens: int
    nbytes: int  # bytes read from disk
    dropped: list[str]  # keys found damaged and removed


class StateStore:
    """SQLite-indexed blob store of chained hybrid states with an LRU byte budget."""

    def __init__(self, folder: str | os.PathLike, budget_bytes: int | None = None,
                 min_free_bytes: int = MIN_FREE_BYTES, discard_newer: bool = False) -> None:
        """Open (or create) the store in `folder`. An index of a newer jambadocs is a NewerStoreError,
        or with `discard_newer` (`jambadocs cache clear`) discarded with its blobs, counted in
        `self.discarded`."""
        self.folder = Path(folder)
        self.discarded = 0
        self.blobs = self.folder / "blobs"
        self.budget_bytes = budget_bytes
        self.min_free_bytes = min_free_bytes
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateStoreError(f"{self.folder}: cannot use as state store folder: {exc}") from exc
        self._db = self._open_index(discard_newer)
        self._cleanup()

    def _open_index(self, discard_newer: bool) -> Engine:
        """The SQLite index; a damaged one (not a database, or corrupt) is discarded with the blobs
        (the cache is disposable), as is a newer jambadocs' one with `discard_newer`. Done holding
        the lock file alone: two processes creating the tables at once made one fail ("table
        already exists"), and it discarded the index and the blobs the other was writing; any other
        error is a StateStoreError, discarding nothing."""
        path = self.folder / "index.sqlite"
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            for attempt in (1, 2):
                db = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
                event.listen(db, "connect", _sqlite_pragmas)
                try:
                    _Base.metadata.create_all(db)
                    self._check_schema(db)
                    return db
                except NewerStoreError:
                    db.dispose()
                    if attempt == 2 or not discard_newer:
                        raise
                    log.warning("state index %s is a newer jambadocs' cache; discarding it", path)
                    self._discard(path)
                except DatabaseError as exc:
                    db.dispose()
                    code = getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF
                    if attempt == 2 or code not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                        raise StateStoreError(f"{path}: cannot open the state index: {exc.orig}") from exc
                    log.warning("state index %s is damaged (%s); starting an empty cache", path, exc.orig)
                    self._discard(path)
            raise AssertionError("unreachable")
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _discard(self, index: Path) -> None:
        """Remove the index and every blob (counted in `self.discarded`); the caller holds the lock alone."""
        self.discarded += sum(1 for _ in self.blobs.glob(f"*/*{BLOB_SUFFIX}"))
        for p in (index, index.with_name(index.name + "-wal"), index.with_name(index.name + "-shm")):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.blobs, ignore_errors=True)
        self.blobs.mkdir(parents=True, exist_ok=True)

    # ---- reading -------------------------------------------------------------------------
    def stored_path(self, keys: Sequence[str]) -> tuple[int, list[str]]:
        """The deepest restorable prefix of a chain: (segments it covers, entry keys root first).

        An entry may cover several segments (the boundaries between them were not stored), so
        the path is found from the deepest stored key back along recorded parents, every one of
        which must be a key of this chain.
        """
        if not keys:
            return 0, []
        with Session(self._db) as s:
            parent = dict(s.execute(select(StateEntry.key, StateEntry.parent_key)
                                    .where(StateEntry.key.in_(list(keys)))).all())
        gone = [k for k in parent if not self._blob_path(k).is_file()]
        if gone:          # files deleted by hand (to free space) since: unreachable, not cached
            log.warning("state store %s: %d blobs are gone; dropping their entries", self.folder, len(gone))
            for key in gone:
                if self.entry(key) is not None:
                    self.drop(key)
            return self.stored_path(keys)
        in_chain = set(keys)
        for depth in range(len(keys), 0, -1):
            path, key = [], keys[depth - 1]
            while key in parent and len(path) < len(keys):  # (the bound only guards a corrupt index)
                path.append(key)
                key = parent[key]
            if path and key == "" and all(k in in_chain for k in path):
                return depth, path[::-1]
        return 0, []

    def stored_depth(self, keys: Sequence[str]) -> int:
        """How many leading segments of the chain a stored prefix covers."""
        return self.stored_path(keys)[0]

    def entry(self, key: str) -> StateEntry | None:
        with Session(self._db, expire_on_commit=False) as s:
            return s.get(StateEntry, key)

    def read(self, key: str, verify: bool = True) -> bytes | None:
        """The bytes of one entry, checked against the row's size and (``verify``) checksum; a
        missing or damaged blob is dropped -> None."""
        row = self.entry(key)
        if row is None:
            return None
        path = self._blob_path(key)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            log.warning("state %s: blob %s unreadable (%s); dropping", key[:12], path, exc)
            self.drop(key)
            return None
        if len(blob) != row.nbytes or (verify and blob_checksum(blob, like=row.sha256) != row.sha256):
            log.warning("state %s: blob %s is damaged (size or checksum); dropping", key[:12], path)
            self.drop(key)
            return None
        return blob

    def restore(self, engine: _Engine, keys: Sequence[str], room: int = 0) -> RestoredPrefix:
        """Join the longest stored, intact prefix of ``keys`` into one engine state (with ``room``
        spare K/V rows for the tokens that will follow it).

        A damaged or refused entry is dropped (with its descendants) and the next longest
        prefix is tried.
        """
        with self._lock:
            dropped: list[str] = []
            while True:
                depth, path = self.stored_path(keys)
                parts, nbytes, bad = [], 0, None
                for key in path:
                    # the row's checksum too: a blob of another prefix of this model (as many tokens,
                    # so as many bytes) passes every check of the engine's
                    blob = self.read(key)
                    if blob is None:
                        bad = key
                        break
                    try:
                        part = engine.state_from_bytes(blob)
                        if part.offset != (parts[-1].n_tokens if parts else 0):
                            raise ValueError(f"delta starts at token {part.offset}, prefix ends at "
                                             f"{parts[-1].n_tokens if parts else 0}")
                    except Exception as exc:  # engine.StateError (other model, damaged) or a chain mismatch
                        log.warning("state %s refused (%s); dropping", key[:12], exc)
                        self.drop(key)
                        bad = key
                        break
                    parts.append(part)
                    nbytes += len(blob)
                if bad is None:
                    break
                dropped.append(bad)
            state = join_all(parts, room) if parts else None
            if path:
                self.touch(path)
                self.hits += 1
            if depth < len(keys):
                self.misses += 1
            n_tokens = state.n_tokens if state is not None else 0
            return RestoredPrefix(state, depth, n_tokens, nbytes, dropped)

    # ---- writing -------------------------------------------------------------------------
    def put(self, key: str, parent_key: str, fingerprint: str, depth: int, offset: int, n_tokens: int,
            blob: bytes, protect: Sequence[str] = ()) -> bool:
        """Store one entry atomically; False (not stored) when it alone exceeds the budget, its
        parent is no longer stored (evicted meanwhile: the entry could never be restored), it would
        leave less than min_free_bytes free on the disk once older entries are evicted, or it
        cannot be written (disk full: a question never fails for its cache).

        ``protect``: keys of the chain in use, evicted only if nothing else frees enough.
        """
        if self.budget_bytes is not None and len(blob) > self.budget_bytes:
            log.info("state %s (%d bytes) exceeds the cache budget; not stored", key[:12], len(blob))
            return False
        if parent_key and (self.entry(parent_key) is None or not self._blob_path(parent_key).is_file()):
            log.info("state %s: parent %s is gone; not stored", key[:12], parent_key[:12])
            return False
        digest = blob_checksum(blob)
        path = self._blob_path(key)
        with self._lock:
            try:
                room = self._make_room(len(blob), protect=[*protect, parent_key])
            except (OSError, DBAPIError) as exc:
                log.warning("state store %s: cannot make room: %s", self.folder, getattr(exc, "orig", None) or exc)
                room = False
            if not room:
                log.info("state %s (%d bytes) not stored: it would leave less than %d bytes free on the "
                         "disk of %s", key[:12], len(blob), self.min_free_bytes, self.folder)
                return False
        with self._lock, self._shared_flock():
            recorded = self.entry(key) is not None
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                _fsync_dir(path.parent)
                now = time.time()
                with Session(self._db) as s, s.begin():
                    s.merge(StateEntry(key=key, parent_key=parent_key, fingerprint=fingerprint, depth=depth,
                                       offset=offset, n_tokens=n_tokens, nbytes=len(blob), sha256=digest,
                                       created=now, last_used=now))
            except (OSError, DBAPIError) as exc:   # disk full, folder read-only: the answer goes on
                log.warning("state %s (%d bytes) not stored in %s: %s", key[:12], len(blob), self.folder,
                            getattr(exc, "orig", None) or exc)
                if not recorded:
                    _remove(path)
                return False
            finally:
                _remove(tmp)
        self.evict(protect=[*protect, key])
        return True

    def touch(self, keys: Sequence[str]) -> None:
        """Mark a chain as used now (one timestamp for all, so parents are never older)."""
        if not keys:
            return
        try:
            with Session(self._db) as s, s.begin():
                s.execute(update(StateEntry).where(StateEntry.key.in_(list(keys))).values(last_used=time.time()))
        except DBAPIError as exc:          # disk full: the entries are still there, only older
            log.warning("state store %s: last use not recorded: %s", self.folder, exc.orig)

    def drop(self, key: str) -> int:
        """Remove an entry and all its descendants; returns how many entries were removed."""
        with self._lock, self._shared_flock():
            with Session(self._db) as s, s.begin():
                doomed = self._with_descendants(s, [key])
                s.execute(delete(StateEntry).where(StateEntry.key.in_(doomed)))
            for k in doomed:
                _remove(self._blob_path(k))
            return len(doomed)

    def _make_room(self, nbytes: int, protect: Sequence[str]) -> bool:
        """Evict least recently used leaves outside `protect` until `nbytes` more leave
        min_free_bytes free on the store's disk; False when even that is not enough."""
        child = aliased(StateEntry)
        leaves = (select(StateEntry.key).where(~exists().where(child.parent_key == StateEntry.key))
                  .where(StateEntry.key.not_in(list(protect))).order_by(StateEntry.last_used))
        while shutil.disk_usage(self.blobs).free - nbytes < self.min_free_bytes:
            with Session(self._db) as s:
                victim = s.scalars(leaves.limit(1)).first()
            if victim is None:
                return False
            log.info("disk of %s nearly full: evicting %s", self.folder, victim[:12])
            self.drop(victim)
        return True

    def evict(self, protect: Sequence[str] = ()) -> int:
        """Evict least recently used leaves until under the budget; returns entries removed.

        Only leaves (entries no other entry continues) are candidates, so an entry goes only after
        all its children: a kept child is always restorable. The chain in use (``protect``) is
        shortened from its end only when nothing else is left.
        """
        if self.budget_bytes is None:
            return 0
        removed = 0
        with self._lock:
            child = aliased(StateEntry)
            leaves = select(StateEntry.key).where(~exists().where(child.parent_key == StateEntry.key))
            for allow_protected in (False, True):
                while (total := self.total_bytes()) > self.budget_bytes:
                    if allow_protected:
                        q = leaves.order_by(StateEntry.depth.desc(), StateEntry.last_used)
                    else:
                        q = leaves.where(StateEntry.key.not_in(list(protect))).order_by(StateEntry.last_used)
                    with Session(self._db) as s:
                        victim = s.scalars(q.limit(1)).first()
                    if victim is None:
                        break
                    log.info("cache over budget (%d > %d bytes): evicting %s", total, self.budget_bytes, victim[:12])
                    removed += self.drop(victim)
        return removed

    def clear(self, fingerprint: str | None = None) -> int:
        """Remove every entry (or every entry of one model); returns how many."""
        with self._lock:
            with Session(self._db) as s:
                q = select(StateEntry.key).where(StateEntry.parent_key == "")
                if fingerprint is not None:
                    q = q.where(StateEntry.fingerprint == fingerprint)
                roots = list(s.scalars(q))
                if fingerprint is None:  # also rows whose parent is already gone
                    roots = list(s.scalars(select(StateEntry.key)))
            if fingerprint is None:
                with Session(self._db) as s, s.begin():
                    s.execute(delete(PageSelection))
                    s.execute(delete(TextTokenCount))
            return sum(self.drop(k) for k in roots if self.entry(k) is not None)

    # ---- page selections (document sets larger than the context) -------------------------
    MAX_SELECTIONS = 256

    def selection(self, key: str) -> list[list[int]] | None:
        """The pages last kept for this key (see PageSelection); None when none are, or the row is
        not a list of lists of page numbers."""
        with Session(self._db) as s:
            row = s.get(PageSelection, key)
            text = row.pages if row is not None else None
        try:
            pages = json.loads(text) if text is not None else None
        except ValueError:
            return None
        if not (isinstance(pages, list) and all(isinstance(d, list) and all(type(n) is int for n in d)
                                                 for d in pages)):
            return None
        return pages

    def remember_selection(self, key: str, pages: Sequence[Sequence[int]]) -> None:
        """Keep `pages` for `key`, dropping the least recently used beyond MAX_SELECTIONS (not
        kept, with a warning, when the index cannot be written: the answer goes on)."""
        try:
            with self._lock, Session(self._db) as s, s.begin():
                s.merge(PageSelection(key=key, pages=json.dumps([list(map(int, d)) for d in pages]),
                                      last_used=time.time()))
                s.flush()
                stale = select(PageSelection.key).order_by(PageSelection.last_used.desc()).offset(self.MAX_SELECTIONS)
                s.execute(delete(PageSelection).where(PageSelection.key.in_(stale)))
        except DBAPIError as exc:
            log.warning("state store %s: page selection not kept: %s", self.folder, exc.orig)

    # ---- token counts of texts (pages of sets larger than the context) --------------------
    MAX_TOKEN_COUNTS = 1_000_000          # rows (~80 MB); the oldest go first
    _IN_BATCH = 500                       # digests per SQLite IN (...) query

    def token_counts(self, tokenizer: str, digests: Sequence[bytes]) -> dict[bytes, int]:
        """The stored counts of those of `digests` that `tokenizer` has counted (see TextTokenCount)."""
        out: dict[bytes, int] = {}
        with Session(self._db) as s:
            for i in range(0, len(digests), self._IN_BATCH):
                rows = s.execute(select(TextTokenCount.digest, TextTokenCount.tokens).where(
                    TextTokenCount.tokenizer == tokenizer, TextTokenCount.digest.in_(digests[i: i + self._IN_BATCH])))
                out.update((digest, tokens) for digest, tokens in rows)
        return out

    def remember_token_counts(self, tokenizer: str, counts: dict[bytes, int]) -> None:
        """Keep `counts` (text digest -> tokens) for `tokenizer`, dropping the oldest beyond
        MAX_TOKEN_COUNTS (not kept, with a warning, when the index cannot be written)."""
        if not counts:
            return
        now = time.time()
        try:
            with self._lock, Session(self._db) as s, s.begin():
                rows = [{"tokenizer": tokenizer, "digest": d, "tokens": n, "created": now} for d, n in counts.items()]
                s.execute(TextTokenCount.__table__.insert().prefix_with("OR REPLACE"), rows)
                over = s.scalar(select(func.count()).select_from(TextTokenCount)) - self.MAX_TOKEN_COUNTS
                if over > 0:
                    oldest = select(TextTokenCount.created).order_by(TextTokenCount.created).offset(over - 1).limit(1)
                    s.execute(delete(TextTokenCount).where(TextTokenCount.created <= oldest.scalar_subquery()))
        except DBAPIError as exc:
            log.warning("state store %s: token counts not kept: %s", self.folder, exc.orig)

    def counts_of(self, tokenizer: str) -> "StoredCounts":
        """The stored counts of one tokenizer, as `ingest.budget.tokenizer_counter(stored=)` takes them."""
        return StoredCounts(self, tokenizer)

    # ---- reporting -----------------------------------------------------------------------
    def total_bytes(self) -> int:
        with Session(self._db) as s:
            return int(s.scalar(select(func.coalesce(func.sum(StateEntry.nbytes), 0))))

    def stats(self) -> dict:
        """Counts and bytes for `jambadocs cache stats`."""
        with Session(self._db) as s:
            n, total, tokens = s.execute(select(
                func.count(StateEntry.key), func.coalesce(func.sum(StateEntry.nbytes), 0),
                func.coalesce(func.sum(StateEntry.n_tokens - StateEntry.offset), 0))).one()
            models = {fp: {"entries": c, "bytes": int(b)} for fp, c, b in s.execute(
                select(StateEntry.fingerprint, func.count(), func.sum(StateEntry.nbytes))
                .group_by(StateEntry.fingerprint))}
            oldest, newest = s.execute(select(func.min(StateEntry.last_used), func.max(StateEntry.last_used))).one()
        return {"folder": str(self.folder), "entries": int(n), "bytes": int(total), "cached_tokens": int(tokens),
                "budget_bytes": self.budget_bytes, "models": models, "hits": self.hits, "misses": self.misses,
                "oldest_use": oldest, "newest_use": newest}

    def close(self) -> None:
        self._db.dispose()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ---- internals -----------------------------------------------------------------------
    def _blob_path(self, key: str) -> Path:
        return self.blobs / key[:2] / f"{key}{BLOB_SUFFIX}"

    def _with_descendants(self, s: Session, keys: list[str]) -> list[str]:
        out, frontier = list(keys), list(keys)
        while frontier:
            frontier = list(s.scalars(select(StateEntry.key).where(StateEntry.parent_key.in_(frontier))))
            out.extend(frontier)
        return out

    @contextmanager
    def _shared_flock(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _check_schema(self, db: Engine) -> None:
        with Session(db) as s, s.begin():
            row = s.get(_Meta, "schema_version")
            if row is None:
                s.add(_Meta(name="schema_version", value=str(SCHEMA_VERSION)))
            elif int(row.value) > SCHEMA_VERSION:
                raise NewerStoreError(f"{self.folder / 'index.sqlite'}: state store schema {row.value} is newer "
                                      f"than this jambadocs ({SCHEMA_VERSION}); upgrade, or clear the cache "
                                      "(jambadocs cache clear)")

    def _cleanup(self) -> None:
        """Remove what a crash left: temp files, unrecorded blobs, rows without a blob.

        Writers hold the lock file shared from the temp file to the SQLite row; holding it
        exclusively here means no live process is inside a write, so every unrecorded file
        is debris.
        """
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process is writing right now; it (or the next start) cleans up
        try:
            with Session(self._db) as s:
                recorded = set(s.scalars(select(StateEntry.key)))
            for path in self.blobs.glob("*/*"):
                if path.name.endswith(TMP_SUFFIX):
                    _remove(path)
                elif path.name.endswith(BLOB_SUFFIX) and path.name[: -len(BLOB_SUFFIX)] not in recorded:
                    _remove(path)  # renamed but never recorded: the writer died
            missing = [k for k in recorded if not self._blob_path(k).is_file()]
            with Session(self._db) as s, s.begin():
                # rows without a blob, and rows whose parent is gone, are unreachable
                doomed = self._with_descendants(s, missing) if missing else []
                parents = {""} | set(s.scalars(select(StateEntry.key)))
                doomed += [k for k, p in s.execute(select(StateEntry.key, StateEntry.parent_key)) if p not in parents]
                doomed = self._with_descendants(s, doomed) if doomed else []
                if doomed:
                    s.execute(delete(StateEntry).where(StateEntry.key.in_(doomed)))
            for k in doomed:
                _remove(self._blob_path(k))
            if doomed:
                log.warning("state store %s: removed %d unreachable entries", self.folder, len(doomed))
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)


class NoStore:
    """What a question uses when the store cannot be opened (`reason`, a StateStoreError's text):
    nothing is found, nothing is kept; answers are computed in full."""

    budget_bytes = None

    def __init__(self, folder: str | os.PathLike, reason: str) -> None:
        self.folder, self.reason = Path(folder), reason
        self.hits = self.misses = 0

    def stored_path(self, keys: Sequence[str]) -> tuple[int, list[str]]:
        return 0, []

    def stored_depth(self, keys: Sequence[str]) -> int:
        return 0

    def entry(self, key: str) -> None:
        return None

    def read(self, key: str, verify: bool = True) -> None:
        return None

    def restore(self, engine: Any, keys: Sequence[str], room: int = 0) -> RestoredPrefix:
        self.misses += bool(keys)
        return RestoredPrefix(None, 0, 0, 0, [])

    def put(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def touch(self, keys: Sequence[str]) -> None:
        pass

    def drop(self, key: str) -> int:
        return 0

    def selection(self, key: str) -> None:
        return None

    def remember_selection(self, key: str, pages: Sequence[Sequence[int]]) -> None:
        pass

    def token_counts(self, tokenizer: str, digests: Sequence[bytes]) -> dict[bytes, int]:
        return {}

    def remember_token_counts(self, tokenizer: str, counts: dict[bytes, int]) -> None:
        pass

    def counts_of(self, tokenizer: str) -> "StoredCounts":
        return StoredCounts(self, tokenizer)

    def close(self) -> None:
        pass


def open_or_none(folder: str | os.PathLike, budget_bytes: int | None = None) -> StateStore | NoStore:
    """The store in `folder`, or a NoStore, with one warning naming why, when it cannot be opened
    (a newer jambadocs' index, a folder that cannot be written): a question never fails for its cache."""
    try:
        return StateStore(folder, budget_bytes)
    except StateStoreError as exc:
        log.warning("answering without the state cache: %s", exc)
        return NoStore(folder, str(exc))


@dataclass(frozen=True)
class StoredCounts:
    """One tokenizer's token counts in a store: `get` those known, `put` new ones."""

    store: "StateStore | NoStore"
    tokenizer: str

    def get(self, digests: Sequence[bytes]) -> dict[bytes, int]:
        return self.store.token_counts(self.tokenizer, digests)

    def put(self, counts: dict[bytes, int]) -> None:
        self.store.remember_token_counts(self.tokenizer, counts)


def blob_checksum(blob: bytes, like: str = "") -> str:
    """"xxh3_128:<hex>" of ``blob`` (about 10x faster than sha256 on this machine); the sha256 hex when
    ``like`` is a checksum of that older kind."""
    if like and not like.startswith(CHECKSUM_PREFIX):
        return hashlib.sha256(blob).hexdigest()
    return CHECKSUM_PREFIX + xxhash.xxh3_128_hexdigest(blob)


def join_all(parts: list[Any], room: int = 0) -> Any:
    """Join consecutive deltas pairwise in a balanced tree: each K/V row is copied O(log k) times,
    not O(k) as a left-to-right fold would. The result has `room` spare K/V rows (the last join
    makes them), so questions continuing it append in place."""
    while len(parts) > 2:
        parts = [parts[i].join(parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    if len(parts) == 2:
        return parts[0].join(parts[1], room)
    return parts[0].with_room(room) if room else parts[0]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _remove(path: Path) -> None:
    """Delete a blob (or temp) file; what cannot be deleted (a folder put at its path, a file
    the store may not remove) is left, with a warning: the cache never fails a question."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("state store: cannot remove %s (%s); left as it is", path, exc.strerror or exc)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
