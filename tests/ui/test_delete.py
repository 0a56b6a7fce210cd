"""Deleting a chat or a workspace from the UI handlers, in process over real Services: the
confirmation names what will be deleted, and "Yes" deletes exactly that, even when the user has
opened another chat or workspace since; a chat whose answer is still being written is not deleted."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from ui.handlers import _AskRun



@pytest.fixture
def ui(services_and_handlers):
    svc, h = services_and_handlers
    return SimpleNamespace(svc=svc, h=h)


def _chat(svc, ws_id: int, question: str) -> int:
    chat = svc.chats.create(ws_id)
    svc.chats.save_exchange(chat.id, question, "an answer", "extractive", {}, [])
    return chat.id


def test_yes_deletes_the_chat_the_confirmation_named(ui):
    ws = ui.svc.workspaces.create("w").id
    old, other = _chat(ui.svc, ws, "first question"), _chat(ui.svc, ws, "second question")
    export = Path(ui.h.switch_chat(ws, old)["export_btn"]["value"])    # opening it writes its .md export
    assert export.is_file() and "first question" in export.read_text()
    shown, text, pending = ui.h.ask_delete_chat(old)
    assert shown["visible"] is True and "first question" in text and "1 question " in text and pending == old
    out = ui.h.delete_chat(ws, pending, other)                # the user opened `other` meanwhile
    assert not export.exists()                                # "removed for good": its export too
    assert [c.id for c in ui.svc.chats.list(ws)] == [other]
    assert out["chat_id"] == other and out["chatbot"][0]["content"] == "second question"
    assert out["chat_confirm"]["visible"] is False
    ui.h.delete_chat(ws, pending, other)                      # a second "Yes": nothing else happens
    assert [c.id for c in ui.svc.chats.list(ws)] == [other]
    out = ui.h.delete_chat(ws, other, other)                  # the open chat itself: nothing left to open
    assert ui.svc.chats.list(ws) == [] and out["chat_id"] is None and out["chatbot"] == []


def test_a_new_empty_chat_has_nothing_to_delete(ui):
    with pytest.warns(UserWarning, match="nothing is saved"):
        assert ui.h.ask_delete_chat(None) == gr.skip()


def test_a_chat_with_an_answer_in_flight_is_not_deleted(ui):
    ws = ui.svc.workspaces.create("w").id
    chat = _chat(ui.svc, ws, "question")
    ui.h._asks["session"] = _AskRun(chat_id=chat)             # an ask still writing into it
    with pytest.warns(UserWarning, match="still being written"):
        assert ui.h.delete_chat(ws, chat, chat) == gr.skip()
    assert [c.id for c in ui.svc.chats.list(ws)] == [chat]
    ui.h._asks["session"].settled.set()                       # the answer is saved: now it can go
    ui.h.delete_chat(ws, chat, chat)
    assert ui.svc.chats.list(ws) == []


def test_yes_deletes_the_workspace_the_confirmation_named(ui):
    a, b = ui.svc.workspaces.create("a").id, ui.svc.workspaces.create("b").id
    kept = _chat(ui.svc, b, "kept")
    shown, text, pending = ui.h.ask_delete(a)
    assert shown["visible"] is True and "\u201ca\u201d" in text and pending == a
    ui.h.delete_workspace(pending)                            # even if `b` is open by now
    assert [w.id for w in ui.svc.workspaces.list()] == [b]
    assert [c.id for c in ui.svc.chats.list(b)] == [kept]


def test_the_chats_exports_leave_the_temp_folder_with_the_process(tmp_path):
    """Each server start made a jambadocs-export-* folder in the temp folder and left it there at
    exit, with the Markdown of every chat opened (the chats' text)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        from pathlib import Path
        from app.config import Settings
        from app.services import Services
        from tests.ui.conftest import HANDLER_COMPONENTS
        from ui.handlers import Handlers

        svc = Services(Settings.from_env(data_dir=Path({str(tmp_path / 'data')!r}), engine="extractive"))
        h = Handlers(svc)
        h.bind(**{{name: name for name in HANDLER_COMPONENTS}})
        ws = svc.workspaces.create("w").id
        chat = svc.chats.create(ws)
        svc.chats.save_exchange(chat.id, "a private question", "an answer", "extractive", {{}}, [])
        export = Path(h.switch_chat(ws, chat.id)["export_btn"]["value"])
        assert "a private question" in export.read_text()
        print(export)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    export = Path(run.stdout.strip().splitlines()[-1])
    assert export.name.endswith(".md") and "jambadocs-export-" in str(export)
    assert not export.exists() and not export.parent.parent.exists()


def test_an_answer_the_api_is_writing_keeps_the_pages_confirmations_shut(ui, tmp_path):
    """An answer in flight outside this page (the API, the CLI through the server): the page offered to
    delete its chat, its workspace and the documents it may cite (only its own asks counted)."""
    note = tmp_path / "lighthouse.txt"
    note.write_text("The supply boat comes every second Tuesday, weather permitting.", encoding="utf-8")
    ws = ui.svc.workspaces.create("w").id
    doc = ui.svc.documents.add(ws, note).id
    held = ui.svc.queue.take()                  # the engine is busy: the answer waits, in flight
    assert ui.svc.queue.wait(held, 30)
    events = ui.svc.qa.ask(ws, "When does the boat come?")
    try:
        chat = next(events).chat_id
        for confirm in (lambda: ui.h.ask_delete(ws), lambda: ui.h.ask_delete_chat(chat),
                        lambda: ui.h.ask_remove_document(ws, doc)):
            with pytest.warns(UserWarning, match=f"is busy: an answer is being written in chat {chat}"):
                assert confirm() == gr.skip()
        with pytest.warns(UserWarning, match="is busy"):
            assert ui.h.delete_chat(ws, chat, chat) == gr.skip()
    finally:
        ui.svc.queue.release(held)
    done = [ev for ev in events if ev.kind == "done"]
    assert done and done[0].answer.citations and [c.id for c in ui.svc.chats.list(ws)] == [chat]
    shown, _, pending = ui.h.ask_delete_chat(chat)          # saved: now it can go
    assert shown["visible"] is True and pending == chat
