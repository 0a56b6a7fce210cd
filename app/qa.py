"""Questions over a workspace: one engine for all, served in arrival order, answers saved
with verified citations and timings."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from app.answerers.base import AnswerRequest
from app.citations import parse_and_verify
from app.errors import InvalidInput, NotFound
from app.events import AskEvent
from app.records import MessageInfo

if TYPE_CHECKING:
    from app.services import Services

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 20_000
QUEUE_POLL_S = 0.5


class QAService:
    def __init__(self, svc: "Services"):
        self._svc = svc

    def ask(self, ws_id: int, question: str, chat_id: int | None = None,
            max_new_tokens: int | None = None,
            cancel: threading.Event | None = None) -> Iterator[AskEvent]:
        """Validate now, then return the stream of events: "progress" (stage "queue" while other
        asks are served: `total` = asks ahead), "token" (answer text pieces), and one final
        "done" whose `answer` is the saved assistant message with verified citations."""
        question = (question or "").strip()
        if not question:
            raise InvalidInput("the question is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise InvalidInput(f"the question is longer than {MAX_QUESTION_CHARS} characters")
        ws = self._svc.workspaces.get(ws_id)
        if chat_id is not None:
            chat = self._svc.chats.get(chat_id)
            if chat.workspace_id != ws_id:
                raise NotFound(f"chat {chat_id} is not in workspace {ws.name!r}")
        doc_ids, documents = self._svc.documents.load(ws_id)
        if not documents:
            raise InvalidInput(f"workspace {ws.name!r} has no documents; add some first")
        if chat_id is None:
            chat_id = self._svc.chats.create(ws_id).id
        history = self._svc.chats.history(chat_id)
        req = AnswerRequest(documents=documents, question=question, history=history,
                            max_new_tokens=max_new_tokens or self._svc.settings.max_new_tokens,
                            cancel=cancel)
        return self._stream(req, chat_id, doc_ids, ws_id)

    def answer(self, ws_id: int, question: str, chat_id: int | None = None,
               max_new_tokens: int | None = None) -> MessageInfo:
        """`ask` without streaming: the saved answer."""
        final = None
        for ev in self.ask(ws_id, question, chat_id, max_new_tokens):
            if ev.kind == "done":
                final = ev.answer
        assert final is not None
        return final

    def _stream(self, req: AnswerRequest, chat_id: int, doc_ids: list[int],
                ws_id: int) -> Iterator[AskEvent]:
        queue = self._svc.queue
        t_start = time.monotonic()
        ticket = queue.take()
        pieces: list[str] = []
        final_text: str | None = None
        engine_timings: dict = {}
        t_first: float | None = None
        stream = None
        try:
            while not queue.wait(ticket, QUEUE_POLL_S):
                if req.cancel is not None and req.cancel.is_set():
                    return
                yield AskEvent("progress", stage="queue", total=queue.ahead(ticket), chat_id=chat_id)
            t_turn = time.monotonic()
            if not self._svc.answerer_loaded:       # first ask: the engine loads (a checkpoint: slow)
                yield AskEvent("progress", stage="load", done=0, total=1, chat_id=chat_id)
                self._svc.answerer.info()
                yield AskEvent("progress", stage="load", done=1, total=1, chat_id=chat_id)
            answerer = self._svc.answerer
            engine = answerer.name
            stream = answerer.answer(req)
            for ev in stream:
                if ev.kind == "token":
                    if t_first is None:
                        t_first = time.monotonic()
                    pieces.append(ev.text)
                    yield AskEvent("token", text=ev.text, chat_id=chat_id)
                elif ev.kind == "progress":
                    yield AskEvent("progress", done=ev.done, total=ev.total, eta_s=ev.eta_s,
                                   stage=ev.stage, chat_id=chat_id)
                elif ev.kind == "done":
                    final_text = ev.text or "".join(pieces)
                    engine_timings = dict(ev.timings or {})
            t_end = time.monotonic()
        finally:
            if stream is not None and hasattr(stream, "close"):
                stream.close()      # an abandoned ask frees the engine before the next one starts
            queue.release(ticket)
        cancelled = final_text is None or (req.cancel is not None and req.cancel.is_set())
        text = final_text if final_text is not None else "".join(pieces)
        body, citations = parse_and_verify(text, req.documents, doc_ids)
        timings = {
            "cached_tokens": engine_timings.get("cached_tokens", 0),
            "prefilled_tokens": engine_timings.get("prefilled_tokens", 0),
            "ttft_s": engine_timings.get("ttft_s",
                                         round(t_first - t_turn, 4) if t_first is not None else None),
            "tokens_per_s": engine_timings.get("tokens_per_s"),
            **{k: v for k, v in engine_timings.items() if k != "omitted"},
            "queue_s": round(t_turn - t_start, 4),
            "total_s": round(t_end - t_start, 4),
            "omitted": self._omitted(engine_timings.get("omitted"), req),
        }
        raw_omitted = engine_timings.get("omitted")
        if isinstance(raw_omitted, dict) and raw_omitted.get("summary"):
            timings["omitted_summary"] = str(raw_omitted["summary"])
        if cancelled:
            timings["cancelled"] = True
        msg = self._svc.chats.save_exchange(chat_id, req.question, body, engine, timings, citations)
        yield AskEvent("done", text=body, answer=msg, chat_id=chat_id)
        try:        # the engine is up now: record document sizes in its tokens (once per document)
            self._svc._ensure_token_counts(ws_id)
        except Exception:  # noqa: BLE001 -- sizes are informative; never fail an answered ask
            log.exception("counting document tokens failed")

    @staticmethod
    def _omitted(raw, req: AnswerRequest) -> list[dict]:
        """What the engine left out, as [{"doc": N, "file": name, ...}]. Engines may report
        doc numbers, dicts, or {"summary": str, "documents": [dicts]}."""
        if isinstance(raw, dict):
            items = list(raw.get("documents") or [])
            if not items and raw.get("summary"):
                items = [{"detail": str(raw["summary"])}]
        else:
            items = list(raw or [])
        out: list[dict] = []
        for item in items:
            if isinstance(item, int) and 1 <= item <= len(req.documents):
                out.append({"doc": item, "file": req.documents[item - 1].filename})
            elif isinstance(item, dict):
                entry = dict(item)
                if "file" not in entry and "filename" in entry:
                    entry["file"] = entry.pop("filename")
                doc = entry.get("doc")
                if "file" not in entry and isinstance(doc, int) and 1 <= doc <= len(req.documents):
                    entry["file"] = req.documents[doc - 1].filename
                out.append(entry)
            else:
                out.append({"detail": str(item)})
        return out
