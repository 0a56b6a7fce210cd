"""The one object the CLI, the UI and the HTTP API use."""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy import select

from app import db
from app.chats import ChatService
from app.config import Settings
from app.documents import DocumentService
from app.engine_queue import EngineQueue
from app.filestore import FileStore
from app.qa import QAService
from app.records import BudgetInfo
from app.workspaces import WorkspaceService

if TYPE_CHECKING:
    import ingest
    from app.answerers.base import Answerer

log = logging.getLogger(__name__)


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
        self.queue = EngineQueue()
        self._answerer = answerer
        self._answerer_lock = threading.Lock()
        self.workspaces = WorkspaceService(self)
        self.documents = DocumentService(self)
        self.chats = ChatService(self)
        self.qa = QAService(self)
        self._collect_garbage()

    # -- engine -------------------------------------------------------------------------------
    @property
    def answerer(self) -> "Answerer":
        """The engine, created on first use (may load a checkpoint: slow the first time)."""
        if self._answerer is None:
            with self._answerer_lock:
                if self._answerer is None:
                    from app.answerers import make_answerer
                    self._answerer = make_answerer(self.settings)
        return self._answerer

    @property
    def answerer_loaded(self) -> bool:
        return self._answerer is not None

    def engine_info(self) -> dict:
        """{"engine", "model", "device", "dtype", "max_context", ...} of the (loaded) engine."""
        return dict(self.answerer.info())

    def tokenizer_key(self) -> str | None:
        """Identifies the tokenizer token counts are stored under; None before the engine loads
        (the extractive engine costs nothing to start, so it is started here)."""
        if self._answerer is None and self.settings.resolved_engine() == "extractive":
            self.answerer
        if self._answerer is None:
            return None
        info = self._answerer.info()
        return f"{info.get('engine')}:{info.get('fingerprint') or info.get('model') or ''}"

    def count_tokens_later(self, doc_id: int, doc: "ingest.Document") -> int | None:
        """Store the document's token count under the loaded engine's tokenizer (no-op before)."""
        key = self.tokenizer_key()
        if key is None:
            return None
        tokens = sum(self._answerer.count_tokens(p.text) for p in doc.pages)
        with db.transaction(self.sessions) as s:
            if s.get(db.Document, doc_id) is not None:
                s.merge(db.TokenCount(document_id=doc_id, tokenizer=key, tokens=tokens))
        return tokens

    def _ensure_token_counts(self, ws_id: int) -> dict[int, int]:
        key = self.tokenizer_key()
        assert key is not None
        with db.transaction(self.sessions) as s:
            have = {tc.document_id: tc.tokens for tc in s.scalars(
                select(db.TokenCount).join(db.Document)
                .where(db.Document.workspace_id == ws_id, db.TokenCount.tokenizer == key))}
            ids = list(s.scalars(select(db.Document.id).where(db.Document.workspace_id == ws_id)))
        if all(i in have for i in ids):
            return {i: have[i] for i in ids}
        ids, docs = self.documents.load(ws_id)
        for doc_id, doc in zip(ids, docs):
            if doc_id not in have:
                have[doc_id] = self.count_tokens_later(doc_id, doc) or 0
        return {i: have[i] for i in ids}

    def cached_flags(self, ws_id: int, rows: list) -> list[bool]:
        """Per document: is its prefix state in the state store (False before the engine loads)."""
        a = self._answerer
        if a is None or not rows or (getattr(a, "cached_documents", None) is None and a.name != "jamba"):
            return [False] * len(rows)
        from app.cache_probe import cached_flags
        _, docs = self.documents.load(ws_id)
        return cached_flags(self._answerer, docs, self.settings.max_new_tokens)[: len(rows)]

    def budget(self, ws_id: int) -> BudgetInfo:
        """Tokens the workspace's documents take under the engine, against its context."""
        self.answerer                      # load the engine: counts are in its tokens
        counts = self._ensure_token_counts(ws_id)
        used = sum(counts.values())
        info = self.answerer.info()
        limit = info.get("max_context")
        rows = self.documents.list(ws_id)
        cached = sum((d.tokens or 0) for d in rows if d.cached)
        return BudgetInfo(used=used, max=limit, cached=cached,
                          fits=limit is None or used <= limit, documents=len(rows))

    # -- state cache --------------------------------------------------------------------------
    def _state_store(self):
        from app.state_store import StateStore
        store = getattr(self._answerer, "store", None)
        if store is not None:
            return store, False
        return StateStore(self.settings.data_dir / "states", self.settings.cache_bytes), True

    def cache_stats(self) -> dict:
        store, own = self._state_store()
        try:
            return dict(store.stats())
        finally:
            if own:
                store.close()

    def cache_clear(self) -> int:
        """Drop every stored state; returns what `StateStore.clear` reports (entries removed)."""
        store, own = self._state_store()
        try:
            return store.clear()
        finally:
            if own:
                store.close()

    # -- housekeeping -------------------------------------------------------------------------
    def _collect_garbage(self) -> None:
        with db.transaction(self.sessions) as s:
            referenced = set(s.scalars(select(db.Document.content_hash).distinct()))
        self.files.collect_garbage(referenced)

    def close(self) -> None:
        closer = getattr(self._answerer, "close", None)
        if callable(closer):
            closer()
        self.db.dispose()

    def __enter__(self) -> "Services":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
