"""qa.ask(history=...) (an explicit conversation, e.g. OpenAI messages) and stopped asks (the UI's
Stop, a client that hangs up): the question is kept with the partial answer, marked cancelled."""
from __future__ import annotations

import threading

import pytest

from app.errors import Conflict, InvalidInput

TERSE = "Any examples?"       # under 3 terms: the extractive engine borrows the last user question


@pytest.fixture
def ws(svc, corpus):
    ws = svc.workspaces.create("w")
    svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
    return ws


def test_explicit_history_is_what_the_engine_sees_and_is_not_saved(svc, ws):
    chat = svc.chats.create(ws.id).id
    svc.qa.answer(ws.id, "Wilcoxon rank sum test", chat_id=chat)
    from_chat = svc.qa.answer(ws.id, TERSE, chat_id=chat)                  # history: the chat's
    wilcoxon = svc.qa.answer(ws.id, TERSE, history=[("user", "Wilcoxon rank sum test"),
                                                    ("assistant", "see the text")])
    chi = svc.qa.answer(ws.id, TERSE, history=[("user", "chi-squared test of independence"),
                                               ("assistant", "see the text")])
    none = svc.qa.answer(ws.id, TERSE, chat_id=chat, history=[])           # replaces the chat's turns
    assert wilcoxon.text == from_chat.text and "wilcoxon" in wilcoxon.text.lower()
    assert "chi" in chi.text.lower() and chi.text != wilcoxon.text
    assert none.text not in (wilcoxon.text, chi.text)
    # only the new exchange is saved: the given history is not written into the chat
    assert [(m.role, m.text) for m in svc.chats.messages(chi.chat_id)] == [("user", TERSE),
                                                                        ("assistant", chi.text)]
    assert len(svc.chats.messages(chat)) == 6
    with pytest.raises(InvalidInput, match="turn 1"):
        svc.qa.ask(ws.id, TERSE, history=[("system", "be brief")])


def test_closing_the_stream_keeps_the_question_and_the_partial_answer(svc, ws):
    stream = svc.qa.ask(ws.id, "Wilcoxon rank sum test")
    pieces, chat_id = [], None
    for ev in stream:
        chat_id = ev.chat_id
        if ev.kind == "token":
            pieces.append(ev.text)
            if len(pieces) == 2:
                break
    stream.close()                          # what the UI's Stop and a hung-up client amount to
    saved = svc.chats.messages(chat_id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[0].text == "Wilcoxon rank sum test"
    assert saved[1].timings["cancelled"] is True and saved[1].engine == "extractive"
    assert saved[1].text.strip() == "".join(pieces).strip() != ""
    assert svc.qa.answer(ws.id, "chi-squared test").citations      # the engine is free again


def test_a_finished_ask_is_saved_once_even_if_closed_after_done(svc, ws):
    stream = svc.qa.ask(ws.id, "Wilcoxon rank sum test")
    done = next(ev for ev in stream if ev.kind == "done")
    stream.close()
    saved = svc.chats.messages(done.chat_id)
    assert [m.id for m in saved][-1] == done.answer.id and len(saved) == 2
    assert "cancelled" not in done.answer.timings


def test_a_delete_between_ask_and_its_first_event_is_refused(svc, ws):
    """qa.ask returns its stream before the first event (the API iterates it in another thread, the
    UI after a round trip to the page): from that return the ask is being answered, so deleting its
    workspace, a document it reads or its chat is refused, and its answer is saved whole."""
    doc = svc.documents.list(ws.id)[0]
    chat = svc.chats.create(ws.id).id
    stream = svc.qa.ask(ws.id, "Wilcoxon rank sum test", chat_id=chat)
    with pytest.raises(Conflict):
        svc.workspaces.delete(ws.id)
    with pytest.raises(Conflict):
        svc.documents.remove(ws.id, doc.id)
    with pytest.raises(Conflict):
        svc.chats.delete(chat)
    done = [ev for ev in stream if ev.kind == "done"][-1]
    assert done.answer.citations and {c.doc_id for c in done.answer.citations} == {doc.id}
    assert [m.role for m in svc.chats.messages(chat)] == ["user", "assistant"]
    svc.workspaces.delete(ws.id)                     # saved: the workspace is free again


def test_a_stream_closed_before_its_first_event_frees_its_workspace(svc, ws):
    stream = svc.qa.ask(ws.id, "Wilcoxon rank sum test")
    stream.close()
    svc.workspaces.delete(ws.id)
    assert svc.workspaces.list() == []


def test_stopped_while_queued_keeps_the_question_with_an_empty_answer(svc, ws):
    held = svc.queue.take()                 # another ask holds the engine
    assert svc.queue.wait(held, 30)
    cancel = threading.Event()
    events = []
    try:
        for ev in svc.qa.ask(ws.id, "t-test", cancel=cancel):
            events.append(ev)
            if ev.kind == "progress" and ev.stage == "queue":
                cancel.set()                # Stop pressed while waiting for the engine
    finally:
        svc.queue.release(held)
    assert [e.kind for e in events][-1] == "done" and not [e for e in events if e.kind == "token"]
    saved = svc.chats.messages(events[-1].chat_id)
    assert [(m.role, m.text) for m in saved] == [("user", "t-test"), ("assistant", "")]
    assert saved[1].timings["cancelled"] is True and saved[1].timings["queue_s"] >= 0


class _CtrlC:
    """An engine during which Ctrl-C arrives: the signal raises KeyboardInterrupt in the main thread,
    inside the ask's generator, while it waits for the engine's next piece."""
    name = "stub"

    def __init__(self) -> None:
        self.req = None

    def info(self) -> dict:
        return {"engine": "stub", "model": None, "max_context": None}

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def answer(self, req):
        from app.answerers.base import AnswerEvent
        self.req = req
        yield AnswerEvent("token", text="Half an ")
        raise KeyboardInterrupt


def test_ctrl_c_during_an_answer_keeps_the_question_and_stops_the_engine(settings, corpus):
    from app.services import Services

    engine = _CtrlC()
    with Services(settings, answerer=engine) as svc:
        ws = svc.workspaces.create("w")
        svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
        chat_id = None
        with pytest.raises(KeyboardInterrupt):
            for ev in svc.qa.ask(ws.id, "Wilcoxon rank sum test"):
                chat_id = ev.chat_id
        assert engine.req.cancel.is_set()               # a worker thread of the engine would stop too
        saved = svc.chats.messages(chat_id)
        assert [(m.role, m.text.strip()) for m in saved] == [("user", "Wilcoxon rank sum test"),
                                                              ("assistant", "Half an")]
        assert saved[1].timings["cancelled"] is True


@pytest.mark.parametrize("bad", [0, -5, True, 2.5])
def test_an_answer_limit_below_one_token_is_refused(svc, ws, bad):
    with pytest.raises(InvalidInput, match="max_new_tokens"):
        svc.qa.ask(ws.id, "t-test", max_new_tokens=bad)
    assert svc.chats.list(ws.id) == []                  # nothing was saved


def test_a_process_killed_mid_answer_leaves_its_chat_titled_with_the_question(svc, ws):
    """SIGKILL cannot be caught, so nothing of the exchange is saved; the chat the ask opened stays,
    and it says what was asked (it stayed untitled: an empty "New chat" that told nothing)."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    from tests.conftest import REPO
    script = textwrap.dedent(f"""
        import os, signal
        from app.config import Settings
        from app.services import Services
        svc = Services(Settings.from_env(data_dir={str(svc.settings.data_dir)!r}, engine="extractive"))
        for ev in svc.qa.ask({ws.id}, "What does   the Wilcoxon rank sum test compare?"):
            os.kill(os.getpid(), signal.SIGKILL)       # mid-answer: after the first event
        """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=120, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    [chat] = svc.chats.list(ws.id)
    assert chat.messages == 0 and chat.title == "What does the Wilcoxon rank sum test compare?"
    svc.qa.answer(ws.id, "Wilcoxon rank sum test", chat_id=chat.id)     # it can be continued
    assert svc.chats.get(chat.id).messages == 2


def test_an_answer_the_disk_cannot_take_is_a_clear_error_not_a_database_dump(svc, ws, monkeypatch):
    """Saving the answer on a full disk ended the ask with SQLAlchemy's OperationalError (the SQL and
    its parameters, the answer's text among them) and left the new chat behind, empty."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from app.errors import StorageError

    def full(*args, **kwargs):
        raise OperationalError("INSERT INTO messages ...", {"text": "the whole answer"},
                               sqlite3.OperationalError("database or disk is full"))
    monkeypatch.setattr(svc.chats, "save_exchange", full)
    with pytest.raises(StorageError) as err:
        svc.qa.answer(ws.id, "Which tests are shown?")
    assert str(err.value) == (f"the answer could not be saved in {svc.settings.db_path}: "
                              "database or disk is full")
    assert svc.chats.list(ws.id) == []                  # the chat it opened is not left empty


def test_an_engine_that_fails_mid_answer_keeps_the_question_and_the_answer_so_far(svc, ws, monkeypatch):
    """The engine failing after it has written part of the answer (out of memory, a remote server
    gone) lost both the question and the text the user had read; they are saved, marked stopped,
    with the engine's reason, and the engine is free for the next question."""
    answerer = svc.answerer
    real = answerer.answer

    def failing(req):
        tokens = 0
        for ev in real(req):
            yield ev
            tokens += ev.kind == "token"
            if tokens == 3:
                raise RuntimeError("CUDA out of memory.\nTried to allocate 2.00 GiB")

    monkeypatch.setattr(answerer, "answer", failing)
    pieces, chat_id = [], None
    with pytest.raises(RuntimeError, match="out of memory"):
        for ev in svc.qa.ask(ws.id, "Wilcoxon rank sum test"):
            chat_id = ev.chat_id
            pieces += [ev.text] if ev.kind == "token" else []
    saved = svc.chats.messages(chat_id)
    assert [m.role for m in saved] == ["user", "assistant"] and saved[0].text == "Wilcoxon rank sum test"
    assert saved[1].text.strip() == "".join(pieces).strip() != ""
    assert saved[1].timings["cancelled"] is True
    assert saved[1].timings["error"] == "CUDA out of memory. Tried to allocate 2.00 GiB"
    monkeypatch.setattr(answerer, "answer", real)
    assert svc.qa.answer(ws.id, "chi-squared test").citations      # the engine is free again


class _SignallingLock:
    """A lock that tells `attempted` when `thread` tries to take it."""

    def __init__(self, lock, thread_name: str, attempted: threading.Event):
        self._lock, self._name, self._attempted = lock, thread_name, attempted

    def __enter__(self):
        if threading.current_thread().name == self._name:
            self._attempted.set()
        return self._lock.__enter__()

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)


@pytest.mark.parametrize("target", ["workspace", "document", "chat"])
def test_an_ask_registered_between_a_deletes_check_and_its_commit_does_not_read_what_it_takes(
        svc, ws, monkeypatch, target):
    """A delete that passed the busy check just before an ask registered must not commit under that
    ask (which would then answer from, cite and be saved in what is gone): the ask waits for the
    delete and finds its workspace, chat or documents gone. Forced: the delete is held after its
    check until the ask has returned its stream or waits to register."""
    from app.errors import NotFound

    doc = svc.documents.list(ws.id)[0]
    chat = svc.chats.create(ws.id).id
    ask_reached = threading.Event()            # the ask returned its stream, or waits to register
    checked = threading.Event()                # the delete passed its busy check
    real_delete_rows = svc.delete_rows

    def held_delete_rows(what, *args, **kwargs):
        checked.set()
        assert ask_reached.wait(30), "the ask neither returned nor waited"
        return real_delete_rows(what, *args, **kwargs)

    monkeypatch.setattr(svc, "delete_rows", held_delete_rows)
    if hasattr(svc.qa, "_delete_gate"):
        monkeypatch.setattr(svc.qa, "_delete_gate", _SignallingLock(svc.qa._delete_gate, "asker", ask_reached))
    delete = {"workspace": lambda: svc.workspaces.delete(ws.id),
              "document": lambda: svc.documents.remove(ws.id, doc.id),
              "chat": lambda: svc.chats.delete(chat)}[target]
    outcome: dict = {}

    def ask():
        try:
            outcome["stream"] = svc.qa.ask(ws.id, "Wilcoxon rank sum test",
                                           chat_id=None if target == "document" else chat)
        except Exception as exc:  # noqa: BLE001 -- what the ask met is the assertion
            outcome["error"] = exc
        finally:
            ask_reached.set()

    deleter = threading.Thread(target=delete)
    deleter.start()
    assert checked.wait(30)
    asker = threading.Thread(target=ask, name="asker")
    asker.start()
    deleter.join(30)
    asker.join(30)
    assert not deleter.is_alive() and not asker.is_alive()
    expected = InvalidInput if target == "document" else NotFound      # "has no documents" / gone
    assert isinstance(outcome.get("error"), expected), outcome
    assert (svc.workspaces.list() == []) if target == "workspace" else (
        svc.documents.list(ws.id) == [] if target == "document" else chat not in [c.id for c in svc.chats.list(ws.id)])
