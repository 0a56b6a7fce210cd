"""Refusals in the UI handlers, in process over real Services and a real PDF: a toast and no change
to the page (Gradio's gr.Error also put a red "Error" badge on every output, covering the controls);
a refused question stays in its box; navigation is locked while an answer is written; a workspace
or a document is not deleted under an answer being written; removing a document asks first."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from app.qa import MAX_QUESTION_CHARS
from ui.handlers import _AskRun

LOCKED = ("ws_dd", "chat_dd", "new_chat_btn", "create_btn", "delete_btn", "delete_chat_btn", "ask_btn")


@pytest.fixture
def ui(services_and_handlers, corpus):
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w")
    doc = svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
    return SimpleNamespace(svc=svc, ws=ws.id, doc=doc, h=h)


def _session(name: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=name)          # what Handlers reads of a gr.Request


@pytest.mark.parametrize("question,reason", [
    ("x" * (MAX_QUESTION_CHARS + 1), "longer than"),
    ("What is the Wilcoxon test?", "has no documents"),
])
def test_a_refused_question_stays_in_its_box_and_the_chat_is_untouched(ui, question, reason):
    ws = ui.ws if reason != "has no documents" else ui.svc.workspaces.create("empty").id
    with pytest.warns(UserWarning, match=reason):
        updates = list(ui.h.ask(question, ws, None, [], _session("a")))
    assert updates == [gr.skip()]                       # the box keeps the question; nothing else changes
    assert ui.svc.chats.list(ws) == []                  # no empty chat left behind
    assert ui.h._asks == {}


def test_navigation_is_locked_while_the_answer_is_written_and_unlocked_after(ui):
    updates = list(ui.h.ask("Wilcoxon rank sum test", ui.ws, None, [], _session("b")))
    first, last = updates[0], updates[-1]
    assert all(first[c]["interactive"] is False for c in LOCKED), first
    assert all(last[c]["interactive"] is True for c in LOCKED), last
    assert last["chat_dd"]["value"] == last["chat_id"] and "cite-chip" in last["chatbot"][-1]["content"]
    assert all(ui.h.unlocked()[c]["interactive"] is True for c in LOCKED)


def test_stop_unlocks_navigation(ui):
    gen = ui.h.ask("Wilcoxon rank sum test", ui.ws, None, [], _session("c"))
    next(gen)
    first = next(gen)
    gen.close()
    out = ui.h.stopped(ui.ws, first.get("chat_id"), _session("c"))
    assert all(out[c]["interactive"] is True for c in LOCKED)


def test_a_workspace_is_not_deleted_while_an_answer_is_written_in_it(ui):
    other = ui.svc.workspaces.create("other").id
    ui.h._asks["session"] = _AskRun(chat_id=None, ws_id=ui.ws)          # an ask still writing
    with pytest.warns(UserWarning, match="still being written"):
        assert ui.h.ask_delete(ui.ws) == gr.skip()
    with pytest.warns(UserWarning, match="still being written"):       # a confirmation shown before
        assert ui.h.delete_workspace(ui.ws) == gr.skip()
    with pytest.warns(UserWarning, match="still being written"):
        assert ui.h.remove_document(ui.ws, ui.doc.id, None) == gr.skip()
    assert {w.id for w in ui.svc.workspaces.list()} == {ui.ws, other}
    assert len(ui.svc.documents.list(ui.ws)) == 1
    ui.h.delete_workspace(other)                                          # another workspace: fine
    ui.h._asks["session"].settled.set()                                   # the answer is saved
    ui.h.delete_workspace(ui.ws)
    assert ui.ws not in {w.id for w in ui.svc.workspaces.list()}


def test_create_is_refused_to_a_session_whose_answer_is_being_written(ui):
    ui.h._asks["d"] = _AskRun(chat_id=None, ws_id=ui.ws)
    with pytest.warns(UserWarning, match="answer is being written"):   # Enter in the name box
        assert ui.h.create_workspace("new", _session("d")) == gr.skip()
    assert ui.h.create_workspace("new", _session("e"))["ws_name"] == ""  # another tab may
    assert "new" in {w.name for w in ui.svc.workspaces.list()}


def test_removing_a_document_asks_first_and_closes_the_viewer_on_it(ui, corpus):
    second = ui.svc.documents.add(ui.ws, corpus / "pari-refcard.pdf")
    with pytest.warns(UserWarning, match="Pick the document"):
        assert ui.h.ask_remove_document(ui.ws, None) == gr.skip()
    shown, text, pending = ui.h.ask_remove_document(ui.ws, ui.doc.id)
    assert shown["visible"] is True and pending == ui.doc.id
    assert "hsaur-inference.pdf" in text and "document 1" in text
    assert len(ui.svc.documents.list(ui.ws)) == 2                       # nothing removed yet

    viewer = {"cite": {"doc_id": second.id}, "page": 1}                # the viewer shows the other one
    out = ui.h.remove_document(ui.ws, pending, None, viewer)
    assert [d.id for d in ui.svc.documents.list(ui.ws)] == [second.id]
    assert out["doc_confirm"]["visible"] is False and "viewer" not in out
    out = ui.h.remove_document(ui.ws, second.id, None, {"cite": {"doc_id": second.id}, "page": 1})
    assert out["viewer"] is None and ui.svc.documents.list(ui.ws) == []


def test_a_name_in_a_confirmation_is_shown_as_text(ui):
    ws = ui.svc.workspaces.create("<i>italic<i> & co").id
    _, text, _ = ui.h.ask_delete(ws)
    assert "&lt;i&gt;italic&lt;i&gt; &amp; co" in text and "<i>" not in text


def test_another_tab_opening_a_new_chat_whose_first_answer_is_being_written_shows_it(ui):
    """Tab A's new chat is created (empty) when its first question is sent, and the browser remembers
    it for every tab. Tab B opened it as an empty "New chat" and its question became turn 2 of A's.
    Now B shows A's question being answered there (a page reloaded mid-answer must find it), and a
    question of B's in that chat is not asked until the answer is saved: B follows that answer."""
    saved = ui.svc.chats.create(ui.ws).id
    ui.svc.chats.save_exchange(saved, "an earlier question", "an answer", "extractive", {}, [])
    gen = ui.h.ask("Wilcoxon rank sum test", ui.ws, None, [], _session("a"))
    next(gen)
    a_chat = next(gen)["chat_id"]                      # A's new chat, still empty, answer in flight
    out = ui.h.on_load({"ws": ui.ws, "chat": a_chat})  # tab B (same browser storage)
    assert out["chat_id"] == a_chat
    assert [m["role"] for m in out["chatbot"]] == ["user", "assistant"] and "Wilcoxon" in out["chatbot"][0]["content"]
    labels = dict((v, k) for k, v in out["chat_dd"]["choices"])
    assert labels[a_chat] == "New chat (first answer being written)"
    b = ui.h.ask("B's question", ui.ws, a_chat, out["chatbot"], _session("b"))
    with pytest.warns(UserWarning, match="still being written in this chat"):
        following = next(b)                            # not asked: B follows A's answer instead
    assert "question" not in following                 # B's question stays in its box
    assert [m["role"] for m in following["chatbot"]] == ["user", "assistant"]
    assert "Wilcoxon" in following["chatbot"][0]["content"] and following["chatbot"][1]["content"] == "\u2026"
    list(gen)                                          # A's answer is saved
    last = list(b)[-1]                                 # and B shows it, saved
    assert "cite-chip" in last["chatbot"][1]["content"] and "question" not in last
    assert ui.h.on_load({"ws": ui.ws, "chat": a_chat})["chat_id"] == a_chat
    assert [m.text for m in ui.svc.chats.messages(a_chat)][0] == "Wilcoxon rank sum test"
    assert len(ui.svc.chats.messages(a_chat)) == 2


def test_a_page_out_of_date_says_so(ui):
    """Another tab removed the document this page still lists: the refusal says what may have happened."""
    ui.svc.documents.remove(ui.ws, ui.doc.id)
    with pytest.warns(UserWarning, match="does not exist; it may have been deleted in another tab"):
        assert ui.h.ask_remove_document(ui.ws, ui.doc.id) == gr.skip()
