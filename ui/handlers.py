"""Event handlers of the browser UI. Each one calls `app.services.Services` and returns updates.

Handlers return dicts {component: value}; `build_ui` registers the components in
`view_outputs` / `viewer_outputs` so every handler can refresh the same panels the same way.
Refusals and errors of the services (app.errors.AppError, ingest.IngestError) become a warning
toast in plain words, with the page left as it was (ui.refusals).
"""
from __future__ import annotations

import inspect
import logging
import queue
import shutil
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import gradio as gr

from app.background import run_with_progress
from app.documents import UPLOAD_SUFFIXES, namesakes_note
from app.errors import AppError, NotFound
from app.records import CitationInfo, MessageInfo
from ui import render
from ui.export import chat_markdown, write_export
from ui.refusals import Refused, is_refusal, toasts_refusals, warn

log = logging.getLogger(__name__)

UPLOAD_TYPES = list(UPLOAD_SUFFIXES)
DEFAULT_WORKSPACE = "My documents"
LOAD_POLL_S = 0.5                    # how often the engine line shows the checkpoint's loading progress
# The page always opens a workspace (it makes one when there is none), so no workspace means the
# first paint has not arrived yet.
NO_WORKSPACE = "No workspace is open yet (the page may still be loading): wait a moment, or pick or create one"
VIEW_REFRESH_S = 2.0           # an upload batch redraws the documents panel at most this often
STREAM_EVERY_S = 0.05          # at most ~20 chat repaints per second while tokens stream
MAX_TRACKED = 256              # closed asks kept for `stopped` (a page closed mid-answer never sends Stop)
FOLLOW_EVERY_S = 0.25          # a page that came back to an answer being written repaints it at most this often
STOP_WAIT_S = 30.0             # Stop waits this long for the ask to let go (engine load is not stoppable)
MAX_READ_COPIES = 4096         # upload copies remembered as read (see Handlers._read_copies)


def _sent_name(path: str) -> str:
    """The file's name as the browser sent it (ui.app._keep_sent_names keeps it), else its copy's name."""
    return getattr(path, "orig_name", None) or Path(path).name


def drop_upload_copy(path: str | Path) -> bool:
    """Delete Gradio's temporary copy of an uploaded file (and its folder, when empty) once the file
    has been read. Only files inside Gradio's upload folder are touched, never a file of the user's."""
    from gradio.utils import get_upload_folder
    root, path = Path(get_upload_folder()).resolve(), Path(path).resolve()
    if root not in path.parents:
        return False
    path.unlink(missing_ok=True)
    if path.parent != root:                    # Gradio keeps each upload in a folder of its own
        try:
            path.parent.rmdir()
        except OSError:                        # not empty: another file with the same content
            pass
    return True


@dataclass
class _AskRun:
    """One session's ask in flight, shared with `Handlers.stopped`."""

    chat_id: int | None                      # None until the first event names the (new) chat
    ws_id: int | None = None
    question: str = ""
    text: str = ""                           # the answer so far, and a reasoning model's reasoning:
    thinking: str = ""                       # what a page that comes back mid-answer shows
    cancel: threading.Event = field(default_factory=threading.Event)
    settled: threading.Event = field(default_factory=threading.Event)   # saved (or failed), stream closed
    stopped: bool = False                    # the user pressed Stop (set before `cancel`)
    error: str | None = None                 # why it failed after its page went away (see `_finish`)

    def note(self, event) -> None:
        """Keep what an ask event brings."""
        if event.chat_id is not None:
            self.chat_id = event.chat_id
        if event.kind == "token":
            self.text += event.text
        elif event.kind == "thinking":
            self.thinking += event.text


def _restored(ws_id: int | None, chat_id: int | None, shown: dict | None) -> tuple[int | None, int | None]:
    """The open workspace and chat: the session's (server-side) state, else, when the server has
    none for this page (it was restarted while the page stayed open), what the page itself holds
    (`shown`, a hidden value each view writes: {"ws", "chat"})."""
    if ws_id is None and isinstance(shown, dict) and isinstance(shown.get("ws"), int):
        chat = shown.get("chat")
        return shown["ws"], chat if isinstance(chat, int) else None
    return ws_id, chat_id


def _session_key(request: gr.Request | None) -> str:
    """Asks are tracked per browser session (Gradio's session hash)."""
    return str(getattr(request, "session_hash", None) or "")


class Handlers:
    def __init__(self, services: Any):
        self.svc = services
        self.ui = SimpleNamespace()    # the components, set by build_ui through bind()
        self._exports: Path | None = None     # the chats' .md exports: made on first use, removed at exit
        self._asks: dict[str, _AskRun] = {}   # session -> its ask in flight (see stopped())
        self._asks_lock = threading.Lock()
        # (session, Gradio upload copy) read and deleted: the file box adds a drop to the files it
        # still holds, so files dropped while an upload is read come with that upload's files again
        self._read_copies: dict[tuple[str, str], None] = {}

    @property
    def _export_dir(self) -> Path:
        """A private temporary folder for the chats' Markdown exports (they hold the chats' text),
        removed when the handlers go or the process exits: one was left in the temp folder per
        server start, with every chat exported in it."""
        if self._exports is None:
            self._exports = Path(tempfile.mkdtemp(prefix="jambadocs-export-"))
            weakref.finalize(self, shutil.rmtree, self._exports, ignore_errors=True)
        return self._exports

    def bind(self, **components: Any) -> None:
        """Give the handlers the components they update (build_ui calls this once)."""
        self.ui = SimpleNamespace(**components)

    # ---- shared views ---------------------------------------------------------------------
    def _view(self, ws_id: int | None, chat_id: int | None, *, chat: bool = True, budget: bool = True) -> dict:
        """Every left/middle panel for workspace `ws_id` and chat `chat_id` (`budget=False`: skip
        the token counts, which need the engine loaded)."""
        workspaces = self.svc.workspaces.list()
        if ws_id not in {w.id for w in workspaces}:
            ws_id = workspaces[0].id if workspaces else None
        out = {self.ui.ws_dd: gr.update(choices=[(w.name, w.id) for w in workspaces], value=ws_id),
               self.ui.ws_id: ws_id}
        out.update(self._failures(ws_id))
        if ws_id is None:
            out.update({self.ui.docs_html: render.documents_table([], None), self.ui.budget_html: render.budget_gauge(None, []),
                        self.ui.doc_dd: gr.update(choices=[], value=None), self.ui.chat_dd: gr.update(choices=[], value=None),
                        self.ui.chatbot: [], self.ui.export_btn: gr.update(value=None, interactive=False),
                        self.ui.stats_html: render.answer_stats(None), self.ui.chat_id: None,
                        self.ui.prefs: {"ws": None, "chat": None}, self.ui.shown: {"ws": None, "chat": None}})
            return out
        try:
            docs, failed = self.svc.documents.list(ws_id), False
        except AppError as err:               # e.g. the engine that counts tokens cannot start
            docs, failed = [], True
            out[self.ui.docs_html] = render.documents_error(str(err))
            out[self.ui.budget_html] = render.budget_error(str(err))
        if failed:
            pass
        elif budget:
            out.update(self._budget_panels(ws_id, docs))
        else:
            out[self.ui.docs_html] = render.documents_table(docs, None)
            out[self.ui.budget_html] = render.budget_pending()
        out[self.ui.doc_dd] = gr.update(choices=[(f"{d.index}. {d.title or d.filename}", d.id) for d in docs],
                                     value=None)
        if chat:
            chats = self.svc.chats.list(ws_id)
            if chat_id not in {c.id for c in chats}:
                chat_id = None
            out[self.ui.chat_dd] = gr.update(choices=[(self._chat_label(c), c.id) for c in chats], value=chat_id)
            messages = self.svc.chats.messages(chat_id) if chat_id is not None else []
            out[self.ui.chatbot] = render.chat_messages(messages) + self._live_messages(chat_id)
            out[self.ui.export_btn] = self._export(ws_id, chat_id, messages, docs)
            last = next((m for m in reversed(messages) if m.role == "assistant"), None)
            out[self.ui.stats_html] = render.answer_stats(last.timings if last else None)
            out[self.ui.chat_id] = chat_id
        out[self.ui.prefs] = {"ws": ws_id, "chat": chat_id}
        if chat:
            out[self.ui.shown] = {"ws": ws_id, "chat": chat_id}
        return out

    def _failures(self, ws_id: int | None) -> dict:
        """The box listing files of an earlier drop that failed after their page went away (hidden
        when there are none), and the newest one's id, which Dismiss forgets up to."""
        failures = self.svc.documents.failures(ws_id) if ws_id is not None else []
        return {self.ui.failed_box: gr.update(visible=bool(failures)),
                self.ui.failed_html: render.failed_uploads(failures),
                self.ui.failed_seen: failures[-1].id if failures else None}

    @toasts_refusals
    def dismiss_failures(self, ws_id: int | None, up_to: int | None) -> dict:
        """Dismiss: forget the failures shown (not one recorded since the box was drawn)."""
        if ws_id is not None and up_to is not None:
            try:
                self.svc.documents.dismiss_failures(ws_id, up_to)
            except NotFound:                        # the workspace was deleted meanwhile
                pass
        return self._failures(ws_id)

    def _budget_panels(self, ws_id: int, docs) -> dict:
        """Documents table and context gauge; when the engine cannot start, say so in the gauge."""
        try:
            info = self.svc.budget(ws_id)
        except AppError as err:               # the engine may be unavailable: still list documents
            return {self.ui.docs_html: render.documents_table(docs, None),
                    self.ui.budget_html: render.budget_error(str(err))}
        if info.estimated or any(d.tokens is None for d in docs):   # listed before the budget counted them
            docs = self.svc.documents.list(ws_id, estimate=True)
        return {self.ui.docs_html: render.documents_table(docs, info),
                self.ui.budget_html: render.budget_gauge(info, docs)}

    def _live(self, chat_id: int | None) -> tuple[str, "_AskRun"] | tuple[None, None]:
        """(session, ask) of the answer being written into chat `chat_id`, by any session."""
        with self._asks_lock:
            return next(((k, r) for k, r in self._asks.items() if chat_id is not None and r.chat_id == chat_id
                         and not r.settled.is_set()), (None, None))

    def _live_messages(self, chat_id: int | None) -> list[dict]:
        """The question being answered in chat `chat_id` and its answer so far (none when there is
        no such answer): it is saved only once it ends, and a page shows it meanwhile."""
        _, run = self._live(chat_id)
        if run is None:
            return []
        out = [{"role": "user", "content": render.question_text(run.question)}]
        if run.thinking:
            out.append(render.reasoning_message(run.thinking, pending=not run.text))
        out.append({"role": "assistant", "content": render.answer_html(run.text, pending=True) if run.text
                    else "\u2026"})
        return out

    def _chat_label(self, chat) -> str:
        if chat.messages:
            return f"{chat.title or 'New chat'} ({chat.messages // 2} Q)"
        return "New chat (first answer being written)" if self._answering(chat_id=chat.id) else "New chat"

    def _export(self, ws_id: int, chat_id: int | None, messages: list[MessageInfo], docs) -> dict:
        if not messages:
            return gr.update(value=None, interactive=False)
        ws = self.svc.workspaces.get(ws_id)
        chat = self.svc.chats.get(chat_id)
        md = chat_markdown(ws.name, chat, messages, docs, self._engine_info())
        path = write_export(self._export_dir / str(chat_id), f"{ws.name}-{chat.title or 'chat'}", md)
        return gr.update(value=str(path), interactive=True)

    def _engine_info(self) -> dict:
        try:
            return self.svc.engine_info()
        except AppError as err:
            return {"engine": "unavailable", "error": str(err)}

    def _latest_chat(self, ws_id: int | None) -> int | None:
        if ws_id is None:
            return None
        chats = self.svc.chats.list(ws_id)          # newest first
        # not an empty one: another tab's first question may be being answered in it
        return next((c.id for c in chats if c.messages), None)

    def _empty_viewer(self) -> dict:
        return {self.ui.source_head: '<div class="jd-empty" id="jd-source-head">Click a citation chip in an answer '
                                  "to see the cited page here.</div>",
                self.ui.page_image: gr.update(value=None, visible=False), self.ui.nav_row: gr.update(visible=False),
                self.ui.page_text: "", self.ui.viewer: None}

    # ---- load and workspaces --------------------------------------------------------------
    @toasts_refusals
    def on_load(self, prefs: dict | None) -> dict:
        """First paint: workspaces, documents, chat; fast (the engine may still be loading)."""
        prefs = prefs or {}
        workspaces = self.svc.workspaces.list() or [self.svc.workspaces.create(DEFAULT_WORKSPACE)]
        ws_id = prefs.get("ws") if prefs.get("ws") in {w.id for w in workspaces} else workspaces[0].id
        chat_id = prefs.get("chat")       # remembered per browser, so possibly another tab's new chat
        # (or this page's before a reload), whose first answer may still be being written: then it shows
        # the question and the answer so far (`_view`, `follow`), and refuses another question (`ask`)
        if chat_id not in {c.id for c in self.svc.chats.list(ws_id) if c.messages or self._live(c.id)[1]}:
            chat_id = self._latest_chat(ws_id)
        loaded = bool(getattr(self.svc, "answerer_loaded", True))
        out = self._view(ws_id, chat_id, budget=loaded)
        out[self.ui.engine_line] = render.engine_status(self._engine_info()) if loaded else \
            render.engine_loading()
        return out

    def after_load(self, ws_id: int | None) -> Iterator[dict]:
        """Second step of a page load: start the engine (the line says how far its checkpoint has
        loaded, every LOAD_POLL_S), then show it and the token counts."""
        if getattr(self.svc, "answerer_loaded", True):
            info = self._engine_info()
        else:  # the start's own result: a failed start is not tried a second time here
            info = yield from run_with_progress(
                self._engine_info, getattr(self.svc, "load_progress", lambda: None),
                lambda progress: {self.ui.engine_line: render.engine_loading(progress)}, LOAD_POLL_S, "engine-start")
        out = {self.ui.engine_line: render.engine_status(info)}
        if ws_id is not None:
            try:
                out.update(self._budget_panels(ws_id, self.svc.documents.list(ws_id)))
            except AppError as err:
                out[self.ui.docs_html] = render.documents_error(str(err))
                out[self.ui.budget_html] = render.budget_error(str(err))
        yield out

    @toasts_refusals
    def follow(self, ws_id: int | None, chat_id: int | None, request: gr.Request | None = None) -> Iterator[dict]:
        """Third step of a page load: when an answer is still being written into the open chat by
        another page (this one before a reload, or another tab), show it growing, then the chat as
        saved. Stop stops it (`stopped`); opening another chat or workspace stops following it
        (ui.app cancels this event) and the answer goes on; a question in that chat is refused.
        When the engine fails (nothing is saved then), a toast says why and the question is put
        back in the box."""
        key, run = self._live(chat_id)
        if run is None or key == _session_key(request):
            return
        saved = render.chat_messages(self.svc.chats.messages(chat_id))
        yield {self.ui.chatbot: saved + self._live_messages(chat_id)}
        shown = (run.text, run.thinking)
        while not run.settled.wait(FOLLOW_EVERY_S):
            if (run.text, run.thinking) != shown:
                shown = (run.text, run.thinking)
                yield {self.ui.chatbot: saved + self._live_messages(chat_id)}
        out = self._stopped_view(ws_id, run.chat_id, "Stopped.") if run.stopped else self._view(ws_id, run.chat_id)
        if run.error is not None:
            warn(f"The answer to \u201c{run.question}\u201d could not be written: {run.error}. The question is "
                 "back in its box.")
            out[self.ui.question] = run.question
        yield out

    @toasts_refusals
    def switch_workspace(self, ws_id: int | None) -> dict:
        out = self._view(ws_id, self._latest_chat(ws_id))
        out.update(self._empty_viewer())
        return out

    @toasts_refusals
    def create_workspace(self, name: str, request: gr.Request | None = None) -> dict:
        if request is not None and self._answering(request):    # Enter in the name box: Create is locked
            raise Refused("An answer is being written: wait for it or press Stop, then create the workspace")
        ws = self.svc.workspaces.create(name or "")
        out = self._view(ws.id, None)
        out.update(self._empty_viewer())
        out[self.ui.ws_name] = ""
        return out

    @toasts_refusals
    def rename_workspace(self, ws_id: int | None, name: str, chat_id: int | None) -> dict:
        if ws_id is None:
            raise Refused("No workspace selected")
        self.svc.workspaces.rename(ws_id, name or "")
        out = self._view(ws_id, chat_id)
        out[self.ui.ws_name] = ""
        return out

    @toasts_refusals
    def ask_delete(self, ws_id: int | None):
        if ws_id is None:
            raise Refused("No workspace selected")
        self._refuse_if_answering(ws_id)
        ws = self.svc.workspaces.get(ws_id)
        docs = f"{ws.documents} document{'' if ws.documents == 1 else 's'}"
        text = (f"<b>Delete workspace \u201c{render.esc(ws.name)}\u201d?</b> Its {docs} and all its chats are "
                "removed for good.")
        return gr.update(visible=True), text, ws_id          # the confirmed one, whatever is open by then

    def _refuse_if_answering(self, ws_id: int | None = None, chat_id: int | None = None) -> None:
        """The app's rule (`QAService.refuse_if_answering`: answers from the API and the CLI count
        too), and this page's asks not yet begun in the app."""
        where = "chat" if chat_id is not None else "workspace"
        if self._answering(ws_id=ws_id, chat_id=chat_id):
            raise Refused(f"An answer is still being written in this {where}: stop it or wait, then try again")
        self.svc.qa.refuse_if_answering(ws_id=ws_id, chat_id=chat_id, what=f"this {where}")

    @toasts_refusals
    def delete_workspace(self, ws_id: int | None) -> dict:
        """Delete the workspace the confirmation named (`ws_id`: the pending one, not the open one)."""
        if ws_id is not None:
            self._refuse_if_answering(ws_id)
            self.svc.workspaces.delete(ws_id)
        workspaces = self.svc.workspaces.list() or [self.svc.workspaces.create(DEFAULT_WORKSPACE)]
        new_ws = workspaces[0].id
        out = self._view(new_ws, self._latest_chat(new_ws))
        out.update(self._empty_viewer())
        out[self.ui.confirm_box] = gr.update(visible=False)
        return out

    # ---- documents ------------------------------------------------------------------------
    @toasts_refusals
    def upload(self, paths: list[str] | None, ws_id: int | None, password: str | None,
               chat_id: int | None, request: gr.Request | None = None, shown: dict | None = None) -> Iterator[dict]:
        """Add each file in turn; per-file progress (pages read) and plain-words errors. Files this
        session has read already (still in the file box when more were dropped) are left out."""
        lost = ws_id is None                     # (see _restored): the first update gives them back
        ws_id, chat_id = _restored(ws_id, chat_id, shown)
        session = _session_key(request)
        paths = [p for p in paths or [] if (session, str(p)) not in self._read_copies or Path(p).exists()]
        if not paths:
            return
        if ws_id is None:
            raise Refused(NO_WORKSPACE)
        if ws_id not in {w.id for w in self.svc.workspaces.list()}:     # deleted in another tab
            for path in paths:
                drop_upload_copy(path)
            warn("This workspace was deleted (in another tab?): nothing was added. The page now shows "
                 "another workspace; drop the files again there or in a new one.")
            out = self._view(None, None)
            out.update({self.ui.files: None, self.ui.uploads: render.upload_progress([])})
            yield out
            return
        rows = [render.UploadRow(_sent_name(p)) for p in paths]
        # Each kept in the data folder first (its id, or why not): one the server stops before reading
        # is read at its next start (app.documents.keep), not lost with Gradio's temp copy.
        kept: dict[str, int | Exception] = {}
        pending = list(paths)      # not begun: still added, in order, if the page goes away (closed, reloaded)
        unshown: tuple[str, Future] | None = None   # the file being read, until the page has its outcome
        try:
            needs_password = False
            # The password is for this upload only: this event already holds it, so the box is cleared
            # now, in the first update. Gradio sends a generator's last update a second time when it
            # finishes: cleared there, a password typed in between could be wiped.
            first = {self.ui.uploads: render.upload_progress(rows), self.ui.password: ""}
            if lost:
                first.update({self.ui.ws_id: ws_id, self.ui.chat_id: chat_id})
            yield first
            for path, row in zip(paths, rows):      # (after the first update: a big drop takes a while)
                try:
                    kept[path] = self.svc.documents.keep(ws_id, path, filename=row.filename)
                except Exception as err:  # noqa: BLE001 -- shown with its file, as a failed read
                    kept[path] = err
            # The documents panel and gauge are redrawn at most every VIEW_REFRESH_S (and after the last
            # file): each redraw lists the whole workspace, and per file that made a batch's cost grow
            # with the workspace (2.9 s a file at 333 documents in a helper's run, 0.2 s when empty).
            known = {d.id for d in self.svc.documents.list(ws_id)}
            last_view, changed = -VIEW_REFRESH_S, False      # the first added file shows at once
            for n, (row, path) in enumerate(zip(rows, paths), 1):
                pending.remove(path)
                row.status = "reading"
                events: queue.Queue = queue.Queue()        # (done, total) while reading; None at the end
                outcome: Future = Future()

                def work(path=path, events=events, outcome=outcome) -> None:
                    try:
                        if isinstance(kept[path], Exception):
                            raise kept[path]
                        outcome.set_result(self.svc.documents.add_kept(
                            kept[path], password=password or None,
                            progress=lambda done, total: events.put((done, total))))
                    except Exception as err:      # noqa: BLE001 -- shown to the user, per file
                        outcome.set_exception(err)
                    finally:                      # (also when the page has gone away meanwhile)
                        self._drop_read_copy(session, path)
                        events.put(None)

                unshown = (row.filename, outcome)
                threading.Thread(target=work, daemon=True, name="jambadocs-upload").start()
                last_yield = 0.0
                while (progress := events.get()) is not None:
                    row.done, row.total = progress
                    if time.monotonic() - last_yield > 0.1:
                        last_yield = time.monotonic()
                        yield {self.ui.uploads: render.upload_progress(rows)}
                err = outcome.exception()
                if err is None:
                    info = outcome.result()
                    row.total = row.done = info.pages
                    if info.id in known:
                        row.status = "duplicate"
                        row.message = (f"already in this workspace as document {info.index} "
                                       f"\u201c{info.title or info.filename}\u201d (same content)")
                    else:
                        known.add(info.id)
                        row.status = "added"
                        row.message = f"added: {info.extent}" + (
                            f", {render.fmt_tokens(info.tokens)} tokens" if info.tokens else "")
                        if others := self.svc.documents.namesakes(ws_id, info.id):
                            row.message += f"; {namesakes_note(others)}"
                else:
                    if not (is_refusal(err) or isinstance(err, (ValueError, OSError))):
                        log.exception("upload of %s failed", row.filename, exc_info=err)
                    row.status = "error"
                    row.message = render.ingest_error_text(err, row.filename)
                    needs_password = needs_password or getattr(err, "reason", None) == "encrypted"
                changed = changed or row.status == "added"
                out = {}
                if changed and (n == len(rows) or time.monotonic() - last_view >= VIEW_REFRESH_S):
                    out = self._view(ws_id, chat_id, chat=False)      # the documents panel grows
                    last_view, changed = time.monotonic(), False
                out[self.ui.uploads] = render.upload_progress(rows)
                if n == len(rows):
                    out[self.ui.files] = None
                    if needs_password:           # open the password box where the user will type it
                        out[self.ui.password_box] = gr.update(open=True)
                yield out
                unshown = None
        finally:
            if pending or unshown:    # the page went away mid-upload: the rest is added all the same
                rest = [(path, kept.get(path)) for path in pending]
                threading.Thread(target=self._add_rest, args=(ws_id, rest, password, session, unshown),
                                 daemon=True, name="jambadocs-upload-rest").start()

    def _add_rest(self, ws_id: int, rest: list[tuple[str, int | Exception | None]], password: str | None,
                  session: str, reading: tuple[str, Future] | None) -> None:
        """Finish an upload whose page went away: wait for the file being read (`reading`: its name
        and outcome), then add the files not yet begun (`rest`: path and kept id, or why it could
        not be kept, or None if not kept yet), in the order dropped. Nobody sees these outcomes, so
        a failure is recorded with the workspace, shown when it is next opened."""
        if reading is not None:
            name, outcome = reading
            err = outcome.exception()
            if err is not None:
                self.svc.documents.record_failure(ws_id, name, err)
        for path, kept_id in rest:
            try:
                if kept_id is None:
                    self.svc.documents.add_unwatched(ws_id, path, filename=_sent_name(path),
                                                     password=password or None)
                elif isinstance(kept_id, Exception):
                    self.svc.documents.record_failure(ws_id, _sent_name(path), kept_id)
                else:
                    self.svc.documents.add_kept_unwatched(kept_id, password=password or None)
            finally:
                self._drop_read_copy(session, path)

    def _drop_read_copy(self, session: str, path: str) -> None:
        """The workspace keeps its own copy of a file read (added or refused); Gradio's would linger
        in /tmp. Remembered, so the file box's later drops do not bring it back (see `upload`)."""
        if drop_upload_copy(path):
            with self._asks_lock:          # upload workers of several tabs
                self._read_copies[(session, str(path))] = None
                if len(self._read_copies) > MAX_READ_COPIES:
                    del self._read_copies[next(iter(self._read_copies))]

    @toasts_refusals
    def ask_remove_document(self, ws_id: int | None, doc_id: int | None):
        """Show the confirmation for removing the picked document."""
        if ws_id is None or doc_id is None:
            raise Refused("Pick the document to remove first")
        self._refuse_if_answering(ws_id)
        doc = self.svc.documents.get(doc_id)
        name = f"\u201c{doc.title}\u201d ({doc.filename})" if doc.title else f"\u201c{doc.filename}\u201d"
        text = (f"<b>Remove document {doc.index}, {render.esc(name)}?</b> The documents after it move up one "
                "number. Answers that cite it keep their text, but their citation chips no longer open its pages.")
        return gr.update(visible=True), text, doc_id

    @toasts_refusals
    def remove_document(self, ws_id: int | None, doc_id: int | None, chat_id: int | None,
                        viewer: dict | None = None) -> dict:
        """Remove the document the confirmation named (not while an answer is written over it);
        the source viewer closes if it shows that document."""
        if ws_id is None or doc_id is None:
            raise Refused("Pick the document to remove first")
        self._refuse_if_answering(ws_id)
        try:
            self.svc.documents.remove(ws_id, doc_id)
        except NotFound:
            pass                                   # already gone (a second click on "Yes")
        out = self._view(ws_id, chat_id)
        if viewer and viewer.get("cite", {}).get("doc_id") == doc_id:
            out.update(self._empty_viewer())
        out[self.ui.doc_confirm] = gr.update(visible=False)
        return out

    # ---- chat -----------------------------------------------------------------------------
    @toasts_refusals
    def switch_chat(self, ws_id: int | None, chat_id: int | None) -> dict:
        return self._view(ws_id, chat_id)

    @toasts_refusals
    def new_chat(self, ws_id: int | None) -> dict:
        out = self._view(ws_id, None)
        return out

    @toasts_refusals
    def ask_delete_chat(self, chat_id: int | None):
        """Show the confirmation for deleting the open chat."""
        if chat_id is None:
            raise Refused("This is a new chat: nothing is saved in it yet")
        self._refuse_if_answering(chat_id=chat_id)
        chat = self.svc.chats.get(chat_id)
        questions = (chat.messages + 1) // 2
        text = (f"<b>Delete chat \u201c{render.esc(chat.title or 'untitled')}\u201d?</b> Its {questions} question"
                f"{'' if questions == 1 else 's'} and answers are removed for good.")
        return gr.update(visible=True), text, chat_id        # the confirmed one, whatever is open by then

    @toasts_refusals
    def delete_chat(self, ws_id: int | None, chat_id: int | None, open_chat: int | None = None) -> dict:
        """Delete the chat the confirmation named (`chat_id`; not while one of its answers is still
        being written); the open chat stays open unless it was that one (then the latest other)."""
        if chat_id is not None:
            self._refuse_if_answering(chat_id=chat_id)
            try:
                self.svc.chats.delete(chat_id)
            except NotFound:
                pass                                   # already gone (a second click on "Yes")
            shutil.rmtree(self._export_dir / str(chat_id), ignore_errors=True)   # its .md export too
        remaining = [c.id for c in self.svc.chats.list(ws_id)] if ws_id is not None else []   # newest first
        out = self._view(ws_id, open_chat if open_chat in remaining else next(iter(remaining), None))
        out.update(self._empty_viewer())
        out[self.ui.chat_confirm] = gr.update(visible=False)
        return out

    def navigation(self, enabled: bool) -> dict:
        """Lock (or unlock) what would take the page away from the chat an answer is being written
        into: the workspace and chat pickers, New chat, Create and both Delete buttons; and Ask."""
        return {c: gr.update(interactive=enabled) for c in
                (self.ui.ws_dd, self.ui.chat_dd, self.ui.new_chat_btn, self.ui.create_btn, self.ui.delete_btn,
                 self.ui.delete_chat_btn, self.ui.ask_btn)}

    def unlocked(self) -> dict:
        """After an ask ended however it ended (Gradio runs this after the ask's event)."""
        return self.navigation(True)

    def _with_navigation(self, out: dict, enabled: bool) -> dict:
        """`out` (a view) with the navigation controls' interactivity merged into its updates."""
        for c, update in self.navigation(enabled).items():
            out[c] = {**out[c], **update} if isinstance(out.get(c), dict) else update
        return out

    def _answering(self, request: gr.Request | None = None, *, ws_id: int | None = None,
                   chat_id: int | None = None) -> bool:
        """An answer is being written for this browser session (`request`), or into workspace
        `ws_id`, or into chat `chat_id` (by any session)."""
        session = _session_key(request) if request is not None else None
        with self._asks_lock:
            return any(not r.settled.is_set() and (k == session or (ws_id is not None and r.ws_id == ws_id)
                                                   or (chat_id is not None and r.chat_id == chat_id))
                       for k, r in self._asks.items())

    @toasts_refusals
    def ask(self, question: str, ws_id: int | None, chat_id: int | None,
            history: list | None, request: gr.Request | None = None, shown: dict | None = None) -> Iterator[dict]:
        """Stream the answer into the chat; progress bar during prefill; chips when it is saved.

        A question the app refuses (too long, no documents ...) stays in the box and the chat is left
        as it was. While the answer is written, navigation is locked (`navigation`). The first
        event names the chat (a new one when `chat_id` is None): it goes into the chat_id state at
        once, so a Stop shows the saved question. Stop (see `stopped`) finds this ask through
        `_asks` and waits until it has settled."""
        question = (question or "").strip()
        if not question:
            raise Refused("Type a question first")
        ws_id, chat_id = _restored(ws_id, chat_id, shown)
        if ws_id is None:
            raise Refused(NO_WORKSPACE)
        run, key = _AskRun(chat_id=chat_id, ws_id=ws_id, question=question), _session_key(request)
        if not self._track(key, run):    # its prompt would lack the exchange being written: follow that
            warn("An answer is still being written in this chat (in another tab, or from before the page was "
                 "reloaded): it is shown here as it comes; your question stays in its box for when it is done")
            yield from self.follow(ws_id, chat_id, request)
            return
        kwargs: dict = {"chat_id": chat_id}
        if "cancel" in inspect.signature(self.svc.qa.ask).parameters:
            kwargs["cancel"] = run.cancel
        try:
            events = self.svc.qa.ask(ws_id, question, **kwargs)   # refusals come here, before anything changes
        except BaseException:
            run.settled.set()
            self._untrack(key, run)
            raise
        shown = list(history or []) + [{"role": "user", "content": render.question_text(question)},
                                       {"role": "assistant", "content": "\u2026"}]
        handed_on = False
        try:
            yield self._with_navigation({self.ui.question: "", self.ui.chatbot: shown, self.ui.prefill_html: "",
                                         self.ui.stats_html: render.answer_stats(None)}, False)
            done = yield from self._stream_answer(events, question, ws_id, shown, run)
        except GeneratorExit:
            # Stop, or the page went away (closed, reloaded: Gradio closes the event alike). The answer
            # is finished without its page, saved in the chat, and shown to a page that comes back
            # (`follow`); Stop's `stopped` cancels it. It stays tracked: `stopped` and `_answering`.
            handed_on = True
            threading.Thread(target=self._finish, args=(events, run), daemon=True, name="jambadocs-answer").start()
            raise
        finally:
            if not handed_on:
                events.close()     # (no-op when the stream has ended)
                run.settled.set()
                self._untrack(key, run)
        if run.stopped:
            # Stop landed while this ask was between events: its last update may reach the page after
            # `stopped`'s, so it shows the same thing (the saved chat and the note), not an empty bar.
            yield self._with_navigation(self._stopped_view(ws_id, run.chat_id, "Stopped."), True)
            return
        if isinstance(done, dict):               # the engine failed: already shown in the chat
            yield self._with_navigation(done, True)
            return
        if done is None or done.answer is None:
            warn("The engine ended without an answer")
            yield self._with_navigation(self._view(ws_id, run.chat_id), True)
            return
        out = self._view(ws_id, run.chat_id)
        out[self.ui.prefill_html] = ""
        out[self.ui.stats_html] = render.answer_stats(done.answer.timings)
        yield self._with_navigation(out, True)

    def _stream_answer(self, events: Iterator, question: str, ws_id: int, shown: list[dict],
                       run: "_AskRun") -> Iterator[dict]:
        """Relay `qa.ask`'s events as chat / progress updates; returns the "done" event, None, or
        (the engine failed: a toast says why) the last update to show: the reason in place of the
        answer, and the question back in the box when nothing of an answer came. What came is kept
        in `run` too. Closing this leaves `events` open: `ask` hands it on (see there)."""
        last_paint, done = 0.0, None
        eta: tuple[str, float | None] = ("", None)     # (stage, last ETA): engines send some without
        try:
            for event in events:
                out: dict = {}
                new_chat = event.chat_id is not None and event.chat_id != run.chat_id
                first_thought = event.kind == "thinking" and not run.thinking
                run.note(event)
                text, thinking = run.text, run.thinking
                if new_chat:                           # Stop must show this chat
                    out.update(self._chat_picked(ws_id, run.chat_id))
                if event.kind == "progress":
                    if event.eta_s is not None or event.stage != eta[0]:
                        eta = (event.stage, event.eta_s)
                    out[self.ui.prefill_html] = render.progress_bar(event.stage, event.done, event.total, eta[1])
                elif event.kind == "thinking":         # a reasoning model: its reasoning, before the answer
                    if first_thought:
                        shown.insert(len(shown) - 1, render.reasoning_message("", pending=True))
                    if time.monotonic() - last_paint >= STREAM_EVERY_S:
                        last_paint = time.monotonic()
                        shown[-2] = render.reasoning_message(thinking, pending=True)
                        out.update({self.ui.chatbot: shown, self.ui.prefill_html: ""})
                elif event.kind == "token":
                    if time.monotonic() - last_paint >= STREAM_EVERY_S:
                        last_paint = time.monotonic()
                        if thinking:
                            shown[-2] = render.reasoning_message(thinking)
                        shown[-1] = {"role": "assistant", "content": render.answer_html(text, pending=True)}
                        out.update({self.ui.chatbot: shown, self.ui.prefill_html: ""})
                elif event.kind == "done":
                    done = event
                if out:
                    yield out
        except Exception as err:
            if not is_refusal(err):
                raise
            warn(err)
            shown[-1] = {"role": "assistant", "content": f"\u26a0 {render.esc(err)}"}
            failed = self._view(ws_id, run.chat_id)   # a new chat of a failed first ask is gone
            failed.update({self.ui.chatbot: shown, self.ui.prefill_html: ""})
            if not run.text and not run.thinking:   # nothing of it was saved: the question is not lost
                failed[self.ui.question] = question
            return failed
        return done

    def _finish(self, events: Iterator, run: "_AskRun") -> None:
        """Finish, in this thread, an ask whose page went away (or whose Stop is on its way): the
        engine goes on to the end and app.qa saves the answer; when `run.cancel` is set (Stop),
        the stream is closed at its next event, which saves what there is, labelled "(stopped)".
        Either way the engine's turn ends, so the next question is served."""
        try:
            for event in events:
                run.note(event)
                if run.cancel.is_set():
                    break
        except Exception as err:  # noqa: BLE001 -- nobody may be looking: the log says why, and `follow`
            log.warning("the answer in chat %s, finished after its page went away, failed: %s", run.chat_id, err)
            run.error = str(err) if is_refusal(err) else f"{type(err).__name__}: {err}"
        finally:
            try:
                events.close()
            finally:
                run.settled.set()

    def _track(self, key: str, run: "_AskRun") -> bool:
        """Remember `run` as session `key`'s ask, unless an answer is being written into its chat
        already (False); forget the oldest settled ones beyond MAX_TRACKED. One check-and-track:
        two tabs asking in one chat at once both passed a check made apart from the tracking."""
        with self._asks_lock:
            if run.chat_id is not None and any(not r.settled.is_set() and r.chat_id == run.chat_id
                                               for r in self._asks.values()):
                return False
            self._asks.pop(key, None)
            self._asks[key] = run                      # dicts keep insertion order: oldest first
            excess = len(self._asks) - MAX_TRACKED
            for old in [k for k, r in self._asks.items() if r.settled.is_set()][:max(0, excess)]:
                del self._asks[old]
        return True

    def _untrack(self, key: str, run: "_AskRun") -> None:
        with self._asks_lock:
            if self._asks.get(key) is run:
                del self._asks[key]

    def _chat_picked(self, ws_id: int, chat_id: int) -> dict:
        """The chat_id state, the chat picker and the browser's remembered chat set to `chat_id`."""
        chats = self.svc.chats.list(ws_id)
        return {self.ui.chat_id: chat_id, self.ui.prefs: {"ws": ws_id, "chat": chat_id},
                self.ui.shown: {"ws": ws_id, "chat": chat_id},
                self.ui.chat_dd: gr.update(choices=[(self._chat_label(c), c.id) for c in chats], value=chat_id)}

    @toasts_refusals
    def stopped(self, ws_id: int | None, chat_id: int | None, request: gr.Request | None = None) -> dict:
        """After Stop: stop this session's ask, wait until it has saved the question and the partial
        answer, then show the chat as saved (the answer labelled "(stopped)") and a note."""
        with self._asks_lock:
            run = self._asks.pop(_session_key(request), None)
        if run is None:        # the answer this page follows (written before a reload, or by another tab)
            _, run = self._live(chat_id)
        note = "Stopped."
        if run is not None:
            run.stopped = True
            run.cancel.set()               # the engine stops at its next check, even mid-prefill
            if not run.settled.wait(STOP_WAIT_S):
                note = "Stopping\u2026 the engine has not let go yet; the question is saved when it does."
            chat_id = run.chat_id if run.chat_id is not None else chat_id
        return self._with_navigation(self._stopped_view(ws_id, chat_id, note), True)

    def _stopped_view(self, ws_id: int | None, chat_id: int | None, note: str) -> dict:
        """The chat as saved (the answer labelled "(stopped)") and `note` where the progress bar was."""
        out = self._view(ws_id, chat_id) if ws_id is not None else {}
        out[self.ui.prefill_html] = f'<div class="jd-progress-label" id="jd-stopped-note">{render.esc(note)}</div>'
        return out

    # ---- source viewer --------------------------------------------------------------------
    def _citation(self, chat_id: int | None, key: str) -> CitationInfo:
        msg_part, _, idx_part = key.partition(":")
        try:
            msg_id, index = int(msg_part), int(idx_part)
        except ValueError:
            raise Refused(f"Unknown citation {key!r}") from None
        if chat_id is None:
            raise Refused("This citation belongs to no open chat")
        for msg in self.svc.chats.messages(chat_id):
            if msg.id == msg_id and 0 <= index < len(msg.citations):
                return msg.citations[index]
        raise Refused("That answer is no longer in this chat")

    @toasts_refusals
    def open_citation(self, value: str, ws_id: int | None, chat_id: int | None) -> dict:
        if not value:
            return gr.skip()
        key = value.split("|", 1)[0]
        cite = self._citation(chat_id, key)
        if cite.doc_id is None or cite.page is None:
            raise Refused("The cited page does not exist (or its document was removed)")
        return self._show_page(cite, cite.page)

    def turn_page(self, step: int) -> Callable[[dict | None, int | None], dict]:
        @toasts_refusals
        def turn(state: dict | None, ws_id: int | None) -> dict:
            if not state:
                return gr.skip()
            cite = CitationInfo(**state["cite"])
            return self._show_page(cite, state["page"] + step)
        return turn

    def _show_page(self, cite: CitationInfo, number: int) -> dict:
        doc = self.svc.documents.get(cite.doc_id)
        number = max(1, min(doc.pages, number))
        page = self.svc.documents.page(cite.doc_id, number)
        on_cited = number == cite.page
        highlight = (cite.passage or cite.quote) if on_cited and cite.verified else None
        image, marked = None, False
        if doc.kind in ("pdf", "image"):
            try:
                rendered = self.svc.documents.page_image(doc.id, number, highlight)
                image, marked = rendered.image, rendered.highlighted
            except Exception as err:          # noqa: BLE001 -- the text view still works
                log.warning("cannot render page %s of %s: %s", number, doc.filename, err)
                reason = str(err).partition(": ")[2] or str(err)     # (it names the stored file by its hash)
                if getattr(err, "reason", None) == "encrypted":
                    reason += (" (a PDF's password is kept in memory only, until the server stops: add the "
                               "file again with its password to see its pages)")
                warn(f"No page image for {doc.filename}: {reason}. Its text is shown instead.")
        text_html = render.page_text_html(page.text, cite.start if on_cited else None,
                                          cite.end if on_cited else None)
        if on_cited and not cite.verified:
            text_html = text_html.replace('class="jd-page-text"', 'class="jd-page-text jd-unverified"', 1)
        head = render.source_header(cite, doc.pages, number, doc.unit)
        if on_cited and cite.verified and image is not None and not marked:
            head += '<div class="jd-note">The passage is marked in the text below (not found on the page image).</div>'
        state = {"cite": cite.to_dict(), "page": number}
        return {self.ui.source_head: head,
                self.ui.page_image: gr.update(value=image, visible=image is not None),
                self.ui.nav_row: gr.update(visible=doc.pages > 1),
                self.ui.prev_btn: gr.update(interactive=number > 1),
                self.ui.next_btn: gr.update(interactive=number < doc.pages),
                self.ui.page_text: text_html, self.ui.viewer: state}
