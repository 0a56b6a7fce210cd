"""The one object the CLI, the UI and the HTTP API use."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import db
from app.background import lowest_priority
from app.chats import ChatService
from app.config import Settings
from app.documents import DocumentService
from app.engine_queue import EngineQueue
from app.errors import EngineUnavailable, NotFound, StorageError
from app.filestore import FileStore, SpaceReserve
from app.qa import QAService
from app.records import BudgetInfo, context_fit
from app.workspaces import WorkspaceService

if TYPE_CHECKING:
    import ingest
    from app.answerers.base import Answerer

log = logging.getLogger(__name__)

# What a stored document token count measures: the document as the prompt shows it (title frame,
# page markers, text) when the engine can say (`document_tokens`), else its pages' text. A new
# value here makes every count be taken again.
TOKEN_COUNT_FORMAT = "prompt-1"

T = TypeVar("T")
STOP_START_S = 5.0          # `close` waits this long for a checkpoint's load to stop

COUNT_POLL_S = 0.5      # how often the page counting, waiting for an answer to be written, checks for a stop


class Services:
    """svc.workspaces / svc.documents / svc.chats / svc.qa, plus engine and cache helpers.

    The answerer (engine) is created on first use, once, and shared by every workspace;
    `qa.ask` serves one question at a time through `svc.queue`.
    """

    def __init__(self, settings: Settings | None = None, answerer: "Answerer | None" = None):
        self.settings = settings or Settings.from_env()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = db.open_engine(self.settings.db_path)
        self.sessions = db.make_sessionmaker(self.db)
        self.files = FileStore(self.settings.files_dir)
        self.reserve = SpaceReserve(self.settings.data_dir / "reserved-space", self.settings.reserve_bytes)
        self.reserve.ensure()
        self.queue = EngineQueue()
        self._answerer = answerer
        self._answerer_injected = answerer is not None
        self._answerer_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._engine_info: dict | None = None     # answerer.info() once the engine has started
        self.engine_error: str | None = None      # why the last start failed (None: no failure)
        self.workspaces = WorkspaceService(self)
        self.documents = DocumentService(self)
        self.chats = ChatService(self)
        self.qa = QAService(self)
        self._stopping = threading.Event()
        self._rereading: threading.Thread | None = None
        self._count_pages = False                 # see count_pages_in_background
        self._to_count: set[int] = set()          # workspaces whose pages are to be counted
        self._count_every = False                 # ... and every workspace (listed by the counting thread)
        self._counting: threading.Thread | None = None
        self._counting_changed = threading.Condition()
        self._collect_garbage()

    # -- engine -------------------------------------------------------------------------------
    @property
    def answerer(self) -> "Answerer":
        """The engine object, created on first use (EngineUnavailable when the settings name no
        usable engine). Creating it does not load a checkpoint; `start_engine` does."""
        if self._answerer is None:
            with self._answerer_lock:
                if self._answerer is None:
                    from app.answerers import make_answerer
                    self._answerer = make_answerer(self.settings)
        return self._answerer

    @property
    def answerer_loaded(self) -> bool:
        """True once the engine has started (`start_engine` succeeded)."""
        return self._engine_info is not None

    def load_progress(self) -> tuple[str, int, int] | None:
        """(stage, done, total) of the checkpoint being loaded: stage "weights" (layers read) or
        "int8" (layers quantized); None when nothing is loading or the engine reports nothing."""
        if self._engine_info is not None or self._answerer is None:
            return None
        return getattr(self._answerer, "load_progress", None)

    def start_engine(self) -> dict:
        """Start the engine once (may load a checkpoint: slow) and return its info.

        Raises EngineUnavailable saying why when it cannot start; `engine_error` keeps that
        reason. A failed start is tried again on the next call (the next question)."""
        if self._engine_info is not None:
            return self._engine_info
        with self._start_lock:
            if self._engine_info is None:
                try:
                    info = dict(self.answerer.info())
                except EngineUnavailable as exc:
                    self.engine_error = str(exc)
                    raise
                except Exception as exc:  # noqa: BLE001 -- any failure to start is reported as such
                    log.exception("the %s engine failed to start", self.settings.resolved_engine())
                    self.engine_error = (f"the {self.settings.resolved_engine()} engine cannot start: "
                                         f"{type(exc).__name__}: {exc}")
                    raise EngineUnavailable(self.engine_error) from exc
                self.engine_error = None
                self._engine_info = info
                self.count_pages_later()
        return self._engine_info

    def stop(self, reason: str, timeout: float) -> int:
        """The process is stopping (`reason`): documents being read stop at their next page (an
        upload kept for it is read at the next start), a checkpoint's load at its next tensor, and
        the answers being written are saved as they stand (`qa.stop_all`); returns how many answers
        were not saved within `timeout` s."""
        self._stopping.set()
        return self.qa.stop_all(reason, timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop_engine_start(self, timeout: float) -> bool:
        """The process is stopping: stop a checkpoint being loaded (at its next tensor: seconds, not
        the minutes of a large load, which would outlast docker stop's 10 s and end in a kill) and
        start none from now on; wait up to `timeout` s for the start to end. True when none runs."""
        stop = getattr(self._answerer, "stop_loading", None)
        if callable(stop):
            stop()
        if not self._start_lock.acquire(timeout=max(0.0, timeout)):
            return False
        self._start_lock.release()
        return True

    def engine_info(self) -> dict:
        """{"engine", "model", "device", "dtype", "max_context", ...}; starts the engine if needed
        (EngineUnavailable with the reason when it cannot start)."""
        self.start_engine()
        return dict(self.answerer.info())

    def tokenizer_key(self) -> str | None:
        """Identifies the tokenizer token counts are stored under; None while the engine has not
        started (or cannot start). Never starts a checkpoint and never raises: document listing
        and adding must work whatever state the engine is in. The extractive engine and an
        injected answerer cost nothing to start, so they are started here."""
        if self._engine_info is None:
            cheap = self._answerer_injected or self.settings.resolved_engine() == "extractive"
            if not cheap or self.engine_error is not None or self._start_lock.locked():
                return None                   # (locked: another thread is starting it: no waiting)
            try:
                self.start_engine()
            except EngineUnavailable:
                return None
        info = self._engine_info
        return f"{info.get('engine')}:{info.get('fingerprint') or info.get('model') or ''}:{TOKEN_COUNT_FORMAT}"

    def count_tokens_later(self, doc_id: int, doc: "ingest.Document") -> int | None:
        """Store the document's token count under the loaded engine's tokenizer (no-op before)."""
        key = self.tokenizer_key()
        if key is None:
            return None
        try:
            measure = getattr(self._answerer, "document_tokens", None)
            tokens = measure(doc) if callable(measure) else sum(self._answerer.count_tokens(p.text) for p in doc.pages)
            with db.transaction(self.sessions) as s:
                if s.get(db.Document, doc_id) is not None:
                    s.merge(db.TokenCount(document_id=doc_id, tokenizer=key, tokens=tokens))
        except Exception:  # noqa: BLE001 -- a size is informative: never fail the caller for it
            log.exception("counting the tokens of document %s failed", doc_id)
            return None
        return tokens

    def count_pages_in_background(self) -> None:
        """For a long-running process (the server): count the tokens of every page of the stored
        documents under the loaded engine's tokenizer in a thread, once the engine has started, and
        of each document added from then on, after its upload returns (`count_pages_later`); then,
        for a workspace whose pages take more than the context, build the index its questions rank
        pages with. A question asked meanwhile counts (and indexes) what is still missing itself,
        and the counting waits while an answer is being written."""
        self._count_pages = True
        self.count_pages_later()

    def count_pages_later(self, ws_id: int | None = None) -> None:
        """Queue the token counts of workspace `ws_id` (None: of every workspace) for the counting
        thread, started when none runs: each document's (any engine) and each page's (an engine
        that counts pages: the bundled engine's `count_pages`). A no-op unless
        `count_pages_in_background` was called and the engine has started."""
        if not self._count_pages or self._engine_info is None:
            return
        with self._counting_changed:          # (no database work here: a caller may hold a transaction)
            if ws_id is None:
                self._count_every = True     # the counting thread lists the workspaces
            else:
                self._to_count.add(ws_id)
            if self._counting is None and not self._stopping.is_set():
                self._counting = threading.Thread(target=self._count_queued, name="count-pages", daemon=True)
                self._counting.start()

    @property
    def counts_in_background(self) -> bool:
        """Token counts are the counting thread's (`count_pages_in_background`): requests never count."""
        return self._count_pages

    def count_document_tokens(self, ws_id: int) -> None:
        """Store the tokens of the workspace's documents that have none under the engine's tokenizer:
        now, or, when counting runs in the background (the server), by the counting thread, so that
        no request tokenises a whole document (a 2,000-page one: seconds)."""
        if not self._count_pages:
            self._ensure_token_counts(ws_id)
        elif self._uncounted(ws_id):
            self.count_pages_later(ws_id)

    def wait_for_page_counts(self, timeout: float | None = None) -> bool:
        """Wait until the counting thread has nothing left to count (True), or `timeout` s (False)."""
        with self._counting_changed:
            return self._counting_changed.wait_for(lambda: self._counting is None, timeout)

    def _count_queued(self) -> None:
        while True:
            with self._counting_changed:
                every, self._count_every = self._count_every, False
            if every:
                try:
                    with db.transaction(self.sessions) as s:
                        every_id = set(s.scalars(select(db.Workspace.id)))
                except DBAPIError as exc:     # the questions count what is missing
                    log.warning("page token counts not queued: %s", exc.orig)
                    every_id = set()
                with self._counting_changed:
                    self._to_count |= every_id
            with self._counting_changed:
                if self._count_every:
                    continue
                if not self._to_count or self._stopping.is_set():
                    self._counting = None
                    self._counting_changed.notify_all()
                    return
                ws_id = min(self._to_count)
                self._to_count.discard(ws_id)
            try:
                doc_ids, docs = self.documents.load(ws_id)
                counted = self._counted(ws_id)
                pages = getattr(self._answerer, "count_pages", None)
                done = []
                for doc_id, doc in zip(doc_ids, docs):
                    if doc_id not in counted and self._may_count(doc_id):
                        self.count_tokens_later(doc_id, doc)
                    done.append(callable(pages) and pages([doc], go_on=lambda: self._may_count(doc_id)) == len(doc.pages))
                index = getattr(self._answerer, "index_pages", None)
                if docs and all(done) and callable(index) and self._idle():
                    index(docs)               # (a document deleted meanwhile queued the workspace again)
                probe = getattr(self._answerer, "cached_documents", None)
                if docs and callable(probe) and self._idle():
                    probe(docs)               # the chain keys the listing's cached flags look up
            except NotFound:                  # the workspace was deleted meanwhile
                pass
            except Exception:  # noqa: BLE001 -- the next question counts what is missing
                log.exception("counting the page tokens of workspace %s failed", ws_id)

    def _may_count(self, doc_id: int) -> bool:
        """May the counting thread go on with document `doc_id` (`_idle`, and the document was not
        deleted meanwhile)?"""
        if not self._idle():
            return False
        with db.transaction(self.sessions) as s:
            return s.get(db.Document, doc_id) is not None

    def _idle(self) -> bool:
        """Wait until no answer is being written; False when the process is stopping."""
        while not self.qa.wait_until_idle(COUNT_POLL_S):
            if self._stopping.is_set():
                return False
        return not self._stopping.is_set()

    def _counted(self, ws_id: int) -> dict[int, int]:
        """doc id -> tokens, of the workspace's documents counted under the engine's tokenizer."""
        key = self.tokenizer_key()
        with db.transaction(self.sessions) as s:
            return {tc.document_id: tc.tokens for tc in s.scalars(
                select(db.TokenCount).join(db.Document)
                .where(db.Document.workspace_id == ws_id, db.TokenCount.tokenizer == key))}

    def _uncounted(self, ws_id: int) -> list[int]:
        """Ids of the workspace's documents not counted under the engine's tokenizer."""
        have = self._counted(ws_id)
        with db.transaction(self.sessions) as s:
            ids = s.scalars(select(db.Document.id).where(db.Document.workspace_id == ws_id))
            return [i for i in ids if i not in have]

    def _ensure_token_counts(self, ws_id: int) -> None:
        """Count the workspace's uncounted documents now (`count_tokens_later`)."""
        self.start_engine()
        missing = set(self._uncounted(ws_id))
        if missing:
            for doc_id, doc in zip(*self.documents.load(ws_id)):
                if doc_id in missing:
                    self.count_tokens_later(doc_id, doc)

    def cached_flags(self, ws_id: int, rows: list) -> list[bool]:
        """Per document: is its prefix state in the state store (False before the engine starts,
        and when the lookup fails: listing documents never depends on the engine). When counting
        runs in the background, no document is tokenised for it: False until the counting thread
        has computed the document's chain key."""
        a = self._answerer
        if (a is None or self._engine_info is None or not rows
                or (getattr(a, "cached_documents", None) is None and a.name != "jamba")):
            return [False] * len(rows)
        from app.cache_probe import cached_flags
        _, docs = self.documents.load(ws_id)
        try:
            return cached_flags(a, docs, self.settings.max_new_tokens, compute=not self._count_pages)[: len(rows)]
        except Exception:  # noqa: BLE001 -- an informative flag
            log.exception("looking up cached document states failed")
            return [False] * len(rows)

    def budget(self, ws_id: int) -> BudgetInfo:
        """Tokens the workspace's documents take under the engine, against the part of its context
        they can have (the rest is `reserved` for the instructions, the question turn and the
        answer). Starts the engine (counts are in its tokens): EngineUnavailable with the reason
        when it cannot. Documents the counting thread has not counted yet are estimated (`estimated`)."""
        self.start_engine()
        self.count_document_tokens(ws_id)
        info = self.answerer.info()
        limit = info.get("max_context")
        reserve = getattr(self.answerer, "reserved_tokens", None)
        reserved = min(limit, reserve(self.settings.max_new_tokens)) if limit and callable(reserve) else 0
        rows = self.documents.list(ws_id, estimate=True)
        used = sum(d.tokens or 0 for d in rows)
        budget = BudgetInfo(used=used, max=limit, cached=0, fits=True, documents=len(rows), reserved=reserved,
                            estimated=any(d.estimated for d in rows))
        # Cached tokens: of the documents read whole. One over the context is read in part, pages
        # picked per question, so its flag says "as the last question read it": not its size.
        fit = context_fit(rows, budget.room)
        budget.cached = sum(d.tokens or 0 for d in rows if d.cached and fit[d.id] == "whole")
        budget.fits = budget.room is None or used <= budget.room
        return budget

    # -- state cache --------------------------------------------------------------------------
    def _state_store(self, discard_newer: bool = False):
        from app.state_store import NoStore, StateStore
        store = getattr(self._answerer, "store", None)
        if store is not None and not isinstance(store, NoStore):
            return store, False
        return StateStore(self.settings.data_dir / "states", self.settings.cache_bytes,
                          discard_newer=discard_newer), True

    def cache_stats(self) -> dict:
        store, own = self._state_store()
        try:
            return dict(store.stats())
        finally:
            if own:
                store.close()

    def cache_clear(self) -> int:
        """Drop every stored state; returns how many entries were removed. A newer jambadocs' cache
        (which this one cannot read) is removed whole."""
        store, own = self._state_store(discard_newer=True)
        try:
            return store.clear() + store.discarded
        finally:
            if own:
                store.close()

    # -- housekeeping -------------------------------------------------------------------------
    def delete_rows(self, what: str, delete: Callable[[Session], T],
                    pieces: Callable[[Session], list[Callable[[Session], object]]] | None = None) -> T:
        """Run `delete(session)` in one transaction. A full disk must not stop a delete (it is how
        space is freed): then the reserve is given up and the delete tried once more, writing
        less, and first in `pieces(session)` (each deleting a part of it, say a document of a
        workspace), each its own transaction with a checkpoint after, so the WAL needs room for
        one piece, not for the whole delete (a large workspace's is more than the reserve).
        Errors are StorageError naming `what` and the database."""
        for attempt in (1, 2):
            try:
                if attempt == 2 and pieces is not None:
                    self._delete_in_pieces(pieces)
                with db.transaction(self.sessions) as s:
                    if attempt == 1:
                        return delete(s)
                    # Retried on a full disk: freed pages are not zeroed (9-14x less to write);
                    # the next reclaim cuts them off or overwrites them.
                    conn = s.connection()
                    conn.exec_driver_sql("PRAGMA secure_delete = FAST")
                    try:
                        result = delete(s)
                        s.flush()
                    finally:
                        conn.exec_driver_sql("PRAGMA secure_delete = ON")
                    return result
            except DBAPIError as exc:
                full = db.is_disk_full(exc)
                if full and attempt == 1 and self.reserve.release():
                    log.warning("the disk of %s is full: gave up the reserved space to delete %s",
                                self.settings.db_path, what)
                    continue
                hint = "; free some space on that disk and try again" if full else ""
                raise StorageError(f"{what} cannot be deleted from {self.settings.db_path}: "
                                   f"{exc.orig}{hint}") from None
        raise AssertionError("unreachable")

    def _delete_in_pieces(self, pieces: Callable[[Session], list[Callable[[Session], object]]]) -> None:
        """Each of `pieces` in its own transaction (secure_delete FAST, as the retry), the WAL
        checkpointed after each so the next one writes it over from its start."""
        with db.transaction(self.sessions) as s:
            todo = pieces(s)
        for piece in todo:
            with db.transaction(self.sessions) as s:
                conn = s.connection()
                conn.exec_driver_sql("PRAGMA secure_delete = FAST")
                try:
                    piece(s)
                    s.flush()
                finally:
                    conn.exec_driver_sql("PRAGMA secure_delete = ON")
            db.checkpoint(self.db)

    def after_delete(self) -> None:
        """Give the deleted rows' space back to the disk (db.reclaim_space), then put the reserve
        back when there is room. Never raises: the delete is done."""
        try:
            db.reclaim_space(self.db)
        except Exception:  # noqa: BLE001 -- the space comes back at the next delete
            log.exception("giving the space of deleted rows back from %s failed", self.settings.db_path)
        self.reserve.ensure()

    def reread_in_background(self) -> threading.Thread:
        """In a thread, read the uploads a stopped server kept but had not read
        (`documents.add_kept_uploads`), then again the documents an older reader read
        (`documents.reread_outdated`); `close` stops it between two documents. For a long-running
        process (the server). Re-reading leaves the cores to questions: it runs at the lowest CPU
        priority, and OCR in it on one core (kept uploads are read first, as any upload is)."""
        def run() -> None:
            from ingest.ocr import one_core
            try:
                self.documents.add_kept_uploads(stop=self._stopping.is_set)
            except Exception:  # noqa: BLE001 -- kept: tried at the next start
                log.exception("reading the uploads kept by a stopped server failed")
            lowest_priority()
            try:
                with one_core():
                    done = self.documents.reread_outdated(stop=self._stopping.is_set)
            except Exception:  # noqa: BLE001 -- the documents keep their text; tried at the next start
                log.exception("reading stored documents again failed")
                return
            if done["changed"]:
                self.count_pages_later()          # their new text's pages
            if done["changed"] or done["unchanged"]:
                log.warning("read %d stored documents again with a newer reader: %d changed (see their notes)",
                            len(done["changed"]) + len(done["unchanged"]), len(done["changed"]))
        self._rereading = threading.Thread(target=run, name="reread-documents", daemon=True)
        self._rereading.start()
        return self._rereading

    def _collect_garbage(self) -> None:
        with self.files.locked():
            with db.transaction(self.sessions) as s:
                referenced = set(s.scalars(select(db.Document.content_hash).distinct()))
                referenced.update(s.scalars(select(db.KeptUpload.content_hash)))
            self.files.collect_garbage(referenced)

    def close(self) -> None:
        self._stopping.set()
        self.stop_engine_start(STOP_START_S)
        if self._rereading is not None:
            self._rereading.join(timeout=30)      # a document being read is finished and stored
        counting = self._counting
        if counting is not None:
            counting.join(timeout=30)             # stops after the pages it is counting
        closer = getattr(self._answerer, "close", None)
        if callable(closer):
            closer()
        self.db.dispose()

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
