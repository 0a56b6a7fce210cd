"""Questions over a workspace: one engine for all, served in arrival order, answers saved
with verified citations and timings."""
from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from app.answerers.base import AnswerRequest
from app.background import run_with_progress
from app.citations import parse_and_verify
from app.config import check_max_new_tokens
from app.errors import Conflict, EngineUnavailable, InvalidInput, NotFound, StorageError
from app.events import AskEvent
from app.records import MessageInfo

if TYPE_CHECKING:
    from app.services import Services

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 20_000
QUEUE_POLL_S = 0.5
LOAD_POLL_S = 0.5                 # how often the first ask reports how far the checkpoint has loaded


@dataclass
class _Run:
    """What one ask has produced so far (saved as it stands when the ask is stopped)."""

    t_start: float
    engine: str
    pieces: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)   # a reasoning model's <think> block, as streamed
    final_text: str | None = None          # the engine's "done" text; None: it did not finish
    reasoning: str | None = None           # the engine's "done" reasoning
    engine_timings: dict = field(default_factory=dict)
    t_turn: float | None = None            # the engine was ours from here
    t_first: float | None = None
    t_end: float | None = None
    stopped_by: str | None = None          # why it was stopped from outside (the server stopping)


def printable(text: str) -> str:
    """`text` without control characters (NUL, BEL, a terminal's ESC sequences' ESC, ...) but
    tab and line breaks: they mean nothing to the model and would reach a terminal through the chat
    title that `jambadocs chats` prints."""
    return "".join(c for c in text if c in "\t\n\r" or unicodedata.category(c) != "Cc")


class _Stream(Iterator[AskEvent]):
    """`QAService.ask`'s events: the `events` generator, whose ask is forgotten (`forget`) when the
    stream is closed (or dropped) before its first event, as the generator's own end does after."""

    def __init__(self, events: Iterator[AskEvent], forget: Callable[[], None]) -> None:
        self._events, self._forget, self._started = events, forget, False

    def __next__(self) -> AskEvent:
        self._started = True
        return next(self._events)

    def close(self) -> None:
        if not self._started:
            self._started = True
            self._forget()
        self._events.close()

    def __del__(self) -> None:
        if not self._started:
            self._forget()


class QAService:
    def __init__(self, svc: "Services"):
        self._svc = svc
        # asks being answered, from `ask`'s return until saved: id(run) -> (cancel, run, workspace id,
        # chat id: None until a new chat is made)
        self._running: dict[int, tuple[threading.Event, _Run, int, int | None]] = {}
        self._running_changed = threading.Condition()
        self._closing: str | None = None       # why no more asks are taken (see `stop_all`)
        self._delete_gate = threading.Lock()    # a delete's busy check + commit vs an ask's registration

    def stop_all(self, reason: str, timeout: float) -> int:
        """Stop every ask being answered and take no new one (`reason` says why, e.g. the server
        stops): each is saved with its question and answer so far, marked timings["cancelled"] and
        timings["stopped_by"] = `reason`; a checkpoint being loaded stops loading
        (`Services.stop_engine_start`). Waits up to `timeout` s for the saves and the load; returns
        how many asks were still unsaved then."""
        end = time.monotonic() + timeout
        with self._running_changed:
            self._closing = reason
            for cancel, run, _ws, _chat in self._running.values():
                run.stopped_by = reason
                cancel.set()
        self._svc.stop_engine_start(timeout)
        with self._running_changed:
            self._running_changed.wait_for(lambda: not self._running, max(0.0, end - time.monotonic()))
            return len(self._running)

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no answer is being written (True), or `timeout` s (False)."""
        with self._running_changed:
            return self._running_changed.wait_for(lambda: not self._running, timeout)

    def refuse_if_answering(self, *, ws_id: int | None = None, chat_id: int | None = None,
                            what: str) -> None:
        """Raise Conflict naming `what` while an answer is being written into workspace `ws_id`
        (any of its chats) or into chat `chat_id`: deleting it (or a document it cites) would
        fail that answer or leave it citing what is gone. The one rule for UI, API and CLI."""
        with self._running_changed:
            busy = [c for _cancel, _run, w, c in self._running.values()
                    if w == ws_id or (chat_id is not None and c == chat_id)]
        if busy:
            chats = sorted({c for c in busy if c is not None})
            where = (f"chat{'s' if len(chats) > 1 else ''} {', '.join(map(str, chats))}" if chats
                     else "a new chat")
            raise Conflict(f"{what} is busy: an answer is being written in {where}; stop it or wait "
                           "until it is saved, then try again")

    @contextmanager
    def deleting(self, *, ws_id: int | None = None, chat_id: int | None = None, what: str) -> Iterator[None]:
        """`refuse_if_answering`, then hold off new asks until the block (the delete's commit) is done:
        an ask registered between the check and the commit would read, cite and be saved in what the
        delete takes. An ask that comes meanwhile then finds its workspace or chat gone (NotFound)."""
        with self._delete_gate:
            self.refuse_if_answering(ws_id=ws_id, chat_id=chat_id, what=what)
            yield

    def ask(self, ws_id: int, question: str, chat_id: int | None = None,
            max_new_tokens: int | None = None, cancel: threading.Event | None = None,
            history: list[tuple[str, str]] | None = None) -> Iterator[AskEvent]:
        """Validate now, then return the stream of events: "progress" (stage "queue" while other
        asks are served: `total` = asks ahead; stage "load" while the engine starts, its done / total
        the checkpoint's layers read, then "quantize" with --quantize), "thinking"
        (a reasoning model's reasoning, before its answer), "token" (answer text pieces), and one
        final "done" whose `answer` is the saved assistant message with verified citations.

        `history` ([(role "user"|"assistant", text)], oldest first) replaces the chat's own
        earlier turns as what the engine sees; the earlier turns are not saved (only this
        exchange is, in `chat_id` or a new chat). Stopped (`cancel` set, or the stream closed)
        after this returns: the question and the partial answer are saved, marked
        timings["cancelled"]; no "done" event follows a close."""
        if self._closing is not None:
            raise EngineUnavailable(f"no new questions are taken: {self._closing}")
        question = printable(question or "").strip()
        if not question:
            raise InvalidInput("the question is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise InvalidInput(f"the question is longer than {MAX_QUESTION_CHARS} characters")
        check_max_new_tokens(max_new_tokens)
        if history is not None:
            history = self._check_history(history)
        cancel = cancel if cancel is not None else threading.Event()
        loaded = self._svc._answerer
        run = _Run(t_start=time.monotonic(),
                   engine=loaded.name if loaded is not None else self._svc.settings.resolved_engine())
        # Being answered from here, before the workspace is read, not from the stream's first event
        # (the API iterates it in another thread, the UI after a round trip): a delete in between
        # would take what the answer reads, cites and is saved in.
        with self._delete_gate:             # not between a delete's busy check and its commit
            self._track(cancel, run, ws_id, chat_id)
        try:
            ws = self._svc.workspaces.get(ws_id)
            if chat_id is not None:
                chat = self._svc.chats.get(chat_id)
                if chat.workspace_id != ws_id:
                    raise NotFound(f"chat {chat_id} is not in workspace {ws.name!r}")
            doc_ids, documents = self._svc.documents.load(ws_id)
            if not documents:
                raise InvalidInput(f"workspace {ws.name!r} has no documents; add some first")
            new_chat = chat_id is None
            if new_chat:
                # titled with the question now: a process killed before the exchange is saved leaves a
                # chat that says what was asked, not an untitled empty one
                chat_id = self._svc.chats.create(ws_id, title=" ".join(question.split())).id
                self._track(cancel, run, ws_id, chat_id)
            if history is None:
                history = self._svc.chats.history(chat_id)
            req = AnswerRequest(documents=documents, question=question, history=history,
                                max_new_tokens=max_new_tokens or self._svc.settings.max_new_tokens,
                                cancel=cancel)
        except BaseException:
            self._untrack(run)
            raise
        return _Stream(self._stream(req, chat_id, doc_ids, ws_id, run, new_chat), lambda: self._untrack(run))

    def _track(self, cancel: threading.Event, run: _Run, ws_id: int, chat_id: int | None) -> None:
        """Count the ask as being answered (`refuse_if_answering`, `stop_all`) in this chat."""
        with self._running_changed:
            self._running[id(run)] = (cancel, run, ws_id, chat_id)
            if self._closing is not None:        # asked just before: saved with its question, stopped
                run.stopped_by = self._closing
                cancel.set()

    def _untrack(self, run: _Run) -> None:
        with self._running_changed:
            self._running.pop(id(run), None)
            self._running_changed.notify_all()

    def _start_engine(self, chat_id: int | None) -> Iterator[AskEvent]:
        """Start the engine in a thread; meanwhile, every LOAD_POLL_S, "load" progress (layers of the
        checkpoint read) and then, with --quantize, "quantize" (layers made int8). Re-raises what
        the start raised. Ends with the last stage complete (N / N; 1 / 1 for an engine that
        reports no load progress)."""
        last = AskEvent("progress", stage="load", done=0, total=1, chat_id=chat_id)

        def event(progress: tuple[str, int, int]) -> AskEvent:
            nonlocal last
            stage, done, total = progress
            last = AskEvent("progress", stage="quantize" if stage == "int8" else "load", done=done, total=total,
                            chat_id=chat_id)
            return last

        yield from run_with_progress(self._svc.start_engine, getattr(self._svc, "load_progress", lambda: None),
                                     event, LOAD_POLL_S, "engine-start")
        yield AskEvent("progress", stage=last.stage, done=last.total, total=last.total, chat_id=chat_id)

    def answer(self, ws_id: int, question: str, chat_id: int | None = None,
               max_new_tokens: int | None = None,
               history: list[tuple[str, str]] | None = None) -> MessageInfo:
        """`ask` without streaming: the saved answer."""
        final = None
        for ev in self.ask(ws_id, question, chat_id, max_new_tokens, history=history):
            if ev.kind == "done":
                final = ev.answer
        assert final is not None
        return final

    @staticmethod
    def _check_history(history) -> list[tuple[str, str]]:
        turns: list[tuple[str, str]] = []
        for i, turn in enumerate(history):
            try:
                role, text = turn
            except (TypeError, ValueError):
                raise InvalidInput(f"history turn {i + 1} is not a (role, text) pair") from None
            if role not in ("user", "assistant") or not isinstance(text, str):
                raise InvalidInput(f"history turn {i + 1}: role must be 'user' or 'assistant' "
                                   f"and text a string, got {role!r}")
            turns.append((role, text))
        return turns

    def _stream(self, req: AnswerRequest, chat_id: int, doc_ids: list[int],
                ws_id: int, run: _Run, new_chat: bool = False) -> Iterator[AskEvent]:
        try:
            msg = yield from self._answer_and_save(req, chat_id, doc_ids, run, new_chat)
        finally:
            self._untrack(run)
        yield AskEvent("done", text=msg.text, answer=msg, chat_id=chat_id)
        try:        # the engine is up now: record document sizes in its tokens (once per document)
            self._svc.count_document_tokens(ws_id)
        except Exception:  # noqa: BLE001 -- sizes are informative; never fail an answered ask
            log.exception("counting document tokens failed")

    def _answer_and_save(self, req: AnswerRequest, chat_id: int, doc_ids: list[int], run: _Run,
                         new_chat: bool) -> Iterator[AskEvent]:
        """Stream the engine's answer, then save it; returns the saved message. Stopped or failed
        midway, saves what there is and re-raises."""
        try:
            yield from self._run_engine(req, chat_id, run)
        except (GeneratorExit, KeyboardInterrupt):   # the consumer went away (UI Stop, hung up, Ctrl-C)
            req.cancel.set()         # an engine thread still working stops at its next check
            try:
                self._save(req, chat_id, doc_ids, run, cancelled=True)
            except Exception:  # noqa: BLE001 -- e.g. the chat was deleted meanwhile; closing must not fail
                log.exception("saving the stopped ask in chat %s failed", chat_id)
            raise
        except Exception as exc:     # the engine failed (could not start, ran out of memory ...)
            if run.pieces or run.thinking:   # mid-answer: the question and the answer so far are kept
                try:
                    self._save(req, chat_id, doc_ids, run, cancelled=True, error=exc)
                except Exception:  # noqa: BLE001 -- the engine's error is the one to report
                    log.exception("saving the failed ask in chat %s failed", chat_id)
            if new_chat:             # the chat this ask opened would stay behind, empty and untitled
                self._drop_if_empty(chat_id)
            raise
        stopped = req.cancel is not None and req.cancel.is_set()
        try:
            msg = self._save(req, chat_id, doc_ids, run, cancelled=run.final_text is None or stopped)
        except DBAPIError as exc:    # disk full, read-only folder: say so, not SQLAlchemy's dump
            if new_chat:
                self._drop_if_empty(chat_id)
            raise StorageError(f"the answer could not be saved in {self._svc.settings.db_path}: "
                               f"{exc.orig}") from None
        return msg

    def _drop_if_empty(self, chat_id: int) -> None:
        try:
            if self._svc.chats.get(chat_id).messages == 0:
                self._svc.chats.drop(chat_id)
        except Exception:  # noqa: BLE001 -- tidying up must not hide the engine's error
            log.exception("removing the empty chat %s failed", chat_id)

    def _run_engine(self, req: AnswerRequest, chat_id: int, run: _Run) -> Iterator[AskEvent]:
        """Wait for the engine (FIFO), start it if needed, and stream its answer into `run`.
        Returns early, with `run.final_text` None, when `req.cancel` is set while queued."""
        queue = self._svc.queue
        ticket = queue.take()
        stream = None
        try:
            while not queue.wait(ticket, QUEUE_POLL_S):
                if req.cancel is not None and req.cancel.is_set():
                    return
                yield AskEvent("progress", stage="queue", total=queue.ahead(ticket), chat_id=chat_id)
            run.t_turn = time.monotonic()
            if not self._svc.answerer_loaded:       # first ask: the engine starts (a checkpoint: slow)
                yield AskEvent("progress", stage="load", done=0, total=1, chat_id=chat_id)
                try:
                    yield from self._start_engine(chat_id)   # EngineUnavailable says why
                except EngineUnavailable:
                    if req.cancel is not None and req.cancel.is_set():
                        return           # stopped meanwhile (the server stopping): saved as stopped
                    raise
            answerer = self._svc.answerer
            run.engine = answerer.name
            stream = answerer.answer(req)
            for ev in stream:
                if ev.kind in ("token", "thinking"):
                    if run.t_first is None:
                        run.t_first = time.monotonic()
                    (run.pieces if ev.kind == "token" else run.thinking).append(ev.text)
                    yield AskEvent(ev.kind, text=ev.text, chat_id=chat_id)
                elif ev.kind == "progress":
                    yield AskEvent("progress", done=ev.done, total=ev.total, eta_s=ev.eta_s,
                                   stage=ev.stage, chat_id=chat_id)
                elif ev.kind == "done":
                    run.reasoning = getattr(ev, "reasoning", "") or None
                    # an answer that is all reasoning (cut short) is empty, not its streamed pieces
                    run.final_text = ev.text if ev.text or run.reasoning else "".join(run.pieces)
                    run.engine_timings = dict(ev.timings or {})
        finally:
            run.t_end = time.monotonic()
            if stream is not None and hasattr(stream, "close"):
                stream.close()      # an abandoned ask frees the engine before the next one starts
            queue.release(ticket)

    def _save(self, req: AnswerRequest, chat_id: int, doc_ids: list[int], run: _Run,
              cancelled: bool, error: BaseException | None = None) -> MessageInfo:
        """Save the question and the answer as it stands, with verified citations and timings
        (`error`: why the engine stopped mid-answer, kept as timings["error"])."""
        text = run.final_text if run.final_text is not None else "".join(run.pieces)
        body, citations = parse_and_verify(text, req.documents, doc_ids)
        et = run.engine_timings
        t_end = run.t_end if run.t_end is not None else time.monotonic()
        t_turn = run.t_turn if run.t_turn is not None else t_end
        timings = {
            "cached_tokens": et.get("cached_tokens", 0),
            "prefilled_tokens": et.get("prefilled_tokens", 0),
            "ttft_s": et.get("ttft_s", round(run.t_first - t_turn, 4) if run.t_first is not None else None),
            "tokens_per_s": et.get("tokens_per_s"),
            **{k: v for k, v in et.items() if k != "omitted"},
            "queue_s": round(t_turn - run.t_start, 4),
            "total_s": round(t_end - run.t_start, 4),
            "omitted": self._omitted(et.get("omitted"), req),
        }
        raw_omitted = et.get("omitted")
        if isinstance(raw_omitted, dict) and raw_omitted.get("summary"):
            timings["omitted_summary"] = str(raw_omitted["summary"])
        if cancelled:
            timings["cancelled"] = True
            if run.stopped_by:
                timings["stopped_by"] = run.stopped_by
        if error is not None:
            timings["error"] = " ".join(str(error).split())[:300] or type(error).__name__
        reasoning = run.reasoning if run.reasoning is not None else "".join(run.thinking).strip()
        return self._svc.chats.save_exchange(chat_id, req.question, body, run.engine, timings, citations,
                                             reasoning=reasoning or None)

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
