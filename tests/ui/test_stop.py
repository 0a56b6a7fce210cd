"""Stop in the UI handlers, in process (what Gradio does on Stop: close the ask generator, run
`stopped` with the chat_id state as the ask left it), over real Services and a real PDF."""
from __future__ import annotations

import copy
import threading
from types import SimpleNamespace

import pytest


QUESTION = "Wilcoxon rank sum test"


@pytest.fixture
def ui(services_and_handlers, corpus):
    svc, h = services_and_handlers
    ws = svc.workspaces.create("w")
    svc.documents.add(ws.id, corpus / "hsaur-inference.pdf")
    return SimpleNamespace(svc=svc, ws=ws.id, h=h)


def _session(name: str) -> SimpleNamespace:
    return SimpleNamespace(session_hash=name)          # what Handlers reads of a gr.Request


def _ask_until_first_event(ui, request) -> tuple:
    """Start an ask in a new chat; return the generator and the chat_id state after its first event."""
    gen = ui.h.ask(QUESTION, ui.ws, None, [], request)
    placeholder = next(gen)                           # the question and "..." before the engine starts
    assert placeholder["chatbot"][-1]["content"] == "\u2026"
    first = next(gen)                                 # the ask's first event, relayed
    state = first.get("chat_id")
    return gen, state


def _bubbles(out: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in out["chatbot"]]


def test_stop_in_a_new_chat_shows_the_saved_question_and_a_stopped_label(ui):
    gen, state = _ask_until_first_event(ui, _session("a"))
    assert state is not None, "the first event did not put the new chat into the chat_id state"
    gen.close()                                    # Gradio cancels the ask
    out = ui.h.stopped(ui.ws, state, _session("a"))
    bubbles = _bubbles(out)
    assert bubbles[0] == ("user", QUESTION)
    assert bubbles[1][0] == "assistant" and "(stopped)" in bubbles[1][1], bubbles
    assert out["chat_id"] == state and out["prefs"]["chat"] == state
    saved = ui.svc.chats.messages(state)
    assert saved[1].timings["cancelled"] is True
    assert "Stopped." in out["prefill_html"]


def test_stop_waits_until_the_ask_has_saved(ui):
    """`stopped` runs beside the ask being cancelled; it must not read the chat before the save."""
    gen, state = _ask_until_first_event(ui, _session("b"))
    closer = threading.Timer(0.3, gen.close)       # Gradio's /cancel closes the generator a bit later
    closer.start()
    out = ui.h.stopped(ui.ws, state, _session("b"))
    closer.join()
    assert _bubbles(out)[0] == ("user", QUESTION)
    assert "(stopped)" in _bubbles(out)[1][1]
    # the session's next ask is unaffected by the stop
    answer = list(ui.h.ask(QUESTION, ui.ws, out["chat_id"], out["chatbot"], _session("b")))[-1]
    roles = [r for r, _ in _bubbles(answer)]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert "(stopped)" not in _bubbles(answer)[3][1] and "cite-chip" in _bubbles(answer)[3][1]


def test_stop_without_an_ask_shows_the_chat_as_it_is(ui):
    finished = list(ui.h.ask(QUESTION, ui.ws, None, [], _session("c")))[-1]
    chat_id = finished["chat_id"]
    out = ui.h.stopped(ui.ws, chat_id, _session("c"))
    assert _bubbles(out) == _bubbles(finished)
    assert "(stopped)" not in _bubbles(out)[1][1]


def test_an_ask_that_goes_on_after_stop_ends_showing_the_stop(ui):
    """Gradio can deliver the cancelled ask's last update after `stopped`'s (seen in the browser test:
    the note vanished). That update must show the stop as well: the saved chat and the note."""
    gen, state = _ask_until_first_event(ui, _session("d"))
    result = {}
    stopper = threading.Thread(target=lambda: result.update(out=ui.h.stopped(ui.ws, state, _session("d"))))
    stopper.start()
    while not (ui.h._asks.get("d") is None):           # `stopped` has taken the run (and set its cancel)
        threading.Event().wait(0.01)
    updates = list(gen)                                 # the ask runs on to its end instead of being closed
    stopper.join(10)
    assert not stopper.is_alive()
    last = updates[-1]
    assert "Stopped." in last["prefill_html"] and "Stopped." in result["out"]["prefill_html"]
    assert "(stopped)" in _bubbles(last)[1][1] and _bubbles(last) == _bubbles(result["out"])


def test_a_reasoning_model_streams_its_reasoning_as_a_thought_before_the_answer(ui, monkeypatch):
    """Reasoning pieces grow a "Thinking…" thought above the answer bubble while they stream; once
    the answer starts it is titled "Reasoning"; the saved chat shows it collapsed, the same way."""
    from app.events import AskEvent

    chat = ui.svc.chats.create(ui.ws)

    def ask(ws_id, question, chat_id=None, cancel=None, **_):
        yield AskEvent("thinking", text="Page 3 ", chat_id=chat.id)
        yield AskEvent("thinking", text="has it.", chat_id=chat.id)
        yield AskEvent("token", text="It is there.", chat_id=chat.id)
        msg = ui.svc.chats.save_exchange(chat.id, question, "It is there.", "jamba", {}, [],
                                         reasoning="Page 3 has it.")
        yield AskEvent("done", text=msg.text, answer=msg, chat_id=chat.id)

    monkeypatch.setattr(ui.svc.qa, "ask", ask)
    monkeypatch.setattr("ui.handlers.STREAM_EVERY_S", 0.0)
    shown = [copy.deepcopy(out["chatbot"])            # the handler updates one list in place
             for out in ui.h.ask("Where?", ui.ws, chat.id, [], _session("r")) if "chatbot" in out]
    thought = [m for m in shown[2] if m.get("metadata")]
    assert thought and thought[0]["metadata"]["title"] == "Thinking\u2026" and thought[0]["content"] == "Page 3 has it."
    answering = shown[3]
    assert answering[-2]["metadata"]["title"] == "Reasoning" and "It is there." in answering[-1]["content"]
    final = shown[-1]
    assert [m.get("metadata", {}).get("title") for m in final] == [None, "Reasoning", None]
    assert final[1]["content"] == "Page 3 has it." and "It is there." in final[2]["content"]


def test_a_page_reloaded_mid_answer_finds_the_answer_finished_in_the_chat(ui):
    """Reloading (or closing) the page closes the ask's event like Stop does: the answer was stopped
    and saved as "(stopped)", and the reloaded page, which opened before that save, showed neither
    the question nor the answer. Now the answer is finished without its page and saved whole; a
    page opened meanwhile shows the question being answered and follows it to the end; the engine
    is then free for the next question."""
    blocker = ui.svc.queue.take()                      # another ask holds the engine: this one waits
    gen, state = _ask_until_first_event(ui, _session("e"))
    assert state is not None
    gen.close()                                        # the page went away (no Stop)
    page = ui.h.on_load({"ws": ui.ws, "chat": state}) # the reloaded page: a new session
    assert page["chat_id"] == state
    assert _bubbles(page) == [("user", QUESTION), ("assistant", "\u2026")]        # not lost, being written
    refused = ui.h.ask("Another question", ui.ws, state, page["chatbot"], _session("f"))
    with pytest.warns(UserWarning, match="still being written in this chat"):
        next(refused)                                  # its prompt would lack the exchange being written
    following = ui.h.follow(ui.ws, state, _session("f"))
    assert _bubbles(next(following)) == [("user", QUESTION), ("assistant", "\u2026")]
    ui.svc.queue.release(blocker)                      # the engine's turn comes
    last = list(following)[-1]
    bubbles = _bubbles(last)
    assert bubbles[0] == ("user", QUESTION) and "cite-chip" in bubbles[1][1] and "(stopped)" not in bubbles[1][1]
    assert "first token" in last["stats_html"]
    saved = ui.svc.chats.messages(state)
    assert [m.role for m in saved] == ["user", "assistant"] and not saved[1].timings.get("cancelled")
    assert saved[1].citations
    answer = list(ui.h.ask("Kruskal-Wallis test", ui.ws, state, last["chatbot"], _session("f")))[-1]
    assert [r for r, _ in _bubbles(answer)] == ["user", "assistant"] * 2          # the engine is free


def test_stop_on_the_reloaded_page_stops_the_answer_it_follows(ui):
    blocker = ui.svc.queue.take()
    gen, state = _ask_until_first_event(ui, _session("g"))
    gen.close()                                        # reloaded
    ui.h.on_load({"ws": ui.ws, "chat": state})
    out = ui.h.stopped(ui.ws, state, _session("h"))    # Stop on the new page
    ui.svc.queue.release(blocker)
    assert "(stopped)" in _bubbles(out)[1][1] and "Stopped." in out["prefill_html"]
    assert ui.svc.chats.messages(state)[1].timings["cancelled"] is True
    import gradio as gr
    assert list(ui.h.follow(ui.ws, state, _session("h"))) == [gr.skip()]     # nothing left to follow


def test_an_answer_that_fails_after_its_page_went_away_puts_the_question_back_on_the_page_that_follows(
        tmp_path, corpus):
    """The engine (here a remote server that is down) fails while nobody watches the answer: nothing
    is saved, and the question vanished from the page that came back. Now that page says why in a
    toast and puts the question back in its box."""
    import socket

    from app.config import Settings
    from app.services import Services
    from tests.ui.conftest import HANDLER_COMPONENTS
    from ui.handlers import Handlers

    with socket.socket() as s:                         # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.from_env(data_dir=tmp_path / "data", engine="remote",
                                 remote_url=f"http://127.0.0.1:{port}/v1", remote_model="m")
    with Services(settings) as svc:
        h = Handlers(svc)
        h.bind(**{name: name for name in HANDLER_COMPONENTS})
        ws = svc.workspaces.create("w").id
        svc.documents.add(ws, corpus / "pari-refcard.pdf")
        old = svc.chats.create(ws).id
        svc.chats.save_exchange(old, "an earlier question", "an answer", "remote", {}, [])
        blocker = svc.queue.take()                     # another ask holds the engine: this one waits
        gen = h.ask(QUESTION, ws, old, [], _session("x"))
        next(gen)
        gen.close()                                    # the page went away before the engine answered
        following = h.follow(ws, old, _session("y"))   # the page that came back
        assert _bubbles(next(following))[-2:] == [("user", QUESTION), ("assistant", "\u2026")]
        svc.queue.release(blocker)
        with pytest.warns(UserWarning, match="could not be written: .*The question is back in its box"):
            last = list(following)[-1]
        assert last["question"] == QUESTION
        assert [m.text for m in svc.chats.messages(old)] == ["an earlier question", "an answer"]


def test_two_tabs_asking_in_one_chat_at_once_do_not_both_answer(ui):
    """Two tabs open on one chat press Ask at the same moment: the second click arrives while the
    first is still being started (its documents loading in qa.ask). The check for an answer in that
    chat and the tracking of the new one were apart, so both passed, and the second answer was
    written without the first exchange in its prompt but saved after it. Now the second is not
    asked (its question stays in its box): that tab follows the first answer to its end."""
    chat = list(ui.h.ask(QUESTION, ui.ws, None, [], _session("t0")))[-1]["chat_id"]
    real_ask, second, started, tab = ui.svc.qa.ask, [], threading.Event(), []

    def other_tab() -> None:
        with pytest.warns(UserWarning):
            for update in ui.h.ask("Kruskal-Wallis test", ui.ws, chat, [], _session("t2")):
                second.append(update)
                started.set()
        started.set()

    def ask_while_the_other_tab_starts(*args, **kwargs):
        if not tab:                                     # the other tab's click, at this moment
            tab.append(threading.Thread(target=other_tab, daemon=True))
            tab[0].start()
            assert started.wait(30)
        return real_ask(*args, **kwargs)

    ui.svc.qa.ask = ask_while_the_other_tab_starts
    first = list(ui.h.ask("Wilcoxon signed rank test", ui.ws, chat, [], _session("t1")))
    tab[0].join(30)
    assert [m.text for m in ui.svc.chats.messages(chat) if m.role == "user"] == \
        [QUESTION, "Wilcoxon signed rank test"]
    assert "cite-chip" in _bubbles(first[-1])[-1][1]
    assert all("question" not in u for u in second), second       # the other tab's question stays
    assert "Wilcoxon signed rank test" in _bubbles(second[-1])[-2][1]   # and it shows the answer, saved
