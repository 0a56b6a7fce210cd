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
