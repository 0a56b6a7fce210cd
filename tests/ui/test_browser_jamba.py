"""The browser flow with the bundled Jamba engine on a tiny random checkpoint (CPU).

The tiny model's words are noise; what is checked is the UI around it: engine status line,
context gauge over the limit with what is left out, prefill progress with ETA, a streamed
answer, per-answer figures, tokens reused from the state cache on the second ask, and Stop in
a new chat during a slow prefill; a follow-up continuing the chat's last prompt: the question stays, the answer is labelled "(stopped)".
"""
from __future__ import annotations

import re

import pytest

from tests.ui.live_server import start_server
from tests.ui.pages import count, open_app, recorded, text_input, wait_rows, workspace

MAX_CONTEXT = 4096      # small on purpose: the two documents do not fit
SLOW_ENOUGH = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=8, attn_layer_period=8,
                   attn_layer_offset=4, num_attention_heads=8, num_key_value_heads=2, num_experts=4,
                   num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    testing = pytest.importorskip("engine.testing", reason="engine/testing.py (write_tiny_checkpoint) not there")
    pytest.importorskip("app.answerers.jamba", reason="the jamba answerer is not there")
    # Wider than the default tiny model so that reading ~4K tokens takes seconds (about 4.5 s here), not
    # 0.2 s: Stop below must land while the model is still reading.
    return testing.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-jamba"), seed=0,
                                         max_position_embeddings=MAX_CONTEXT, **SLOW_ENOUGH)


def test_flow_with_tiny_jamba(chromium, corpus, tmp_path, tiny_checkpoint, screenshots):
    server = start_server(tmp_path / "data", "--engine", "jamba", "--model", str(tiny_checkpoint),
                          "--device", "cpu", env={"JAMBADOCS_MAX_NEW_TOKENS": "16"})
    context = chromium.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    try:
        open_app(page, server.url)
        engine = page.inner_text("#jd-engine")
        assert "engine jamba" in engine and "device cpu" in engine and "float32" in engine, engine
        assert "4.1k tokens" in engine          # the checkpoint's max_position_embeddings

        page.set_input_files("#jd-upload input[type=file]",
                             [str(corpus / "pari-refcard.pdf"), str(corpus / "hsaur-inference.pdf")])
        page.wait_for_function("() => (document.querySelector('#jd-uploads')?.innerText.match(/added/g) "
                               "|| []).length === 2", timeout=120_000)
        rows = wait_rows(page, 2)
        assert "4 pages" in rows[0] and "15 pages" in rows[1]
        assert all(re.search(r"\d+(\.\d)?k", r) for r in rows), rows     # token counts under the model
        gauge = page.inner_text("#jd-budget")
        assert "tokens for documents" in gauge and "the model's 4.1k less" in gauge and "over the limit" in gauge, gauge
        assert "pari-refcard" in gauge or "Pari-GP" in gauge              # what would be left out

        question = "How do I compute the determinant of a matrix?"
        for turn in (1, 2):
            if turn == 2:
                page.click("#jd-new-chat")
                page.wait_for_function("() => !document.querySelector('#jd-chat .message-row')")
                page.evaluate("() => { window.__jd.chat = []; window.__jd.prefill = []; }")
            text_input(page, "jd-question").fill(question)
            page.click("#jd-ask")
            page.wait_for_function("() => /first token/.test(document.querySelector('#jd-answer-stats')"
                                   "?.innerText || '')", timeout=240_000)
            stats = page.inner_text("#jd-answer-stats")
            figures = re.search(r"([\d.]+k?) tokens from cache, ([\d.]+k?) prefilled", stats)
            assert figures, stats
            assert "tok/s" in stats and "Not read for this answer" in stats, stats
            if turn == 1:
                prefill = recorded(page, "prefill")
                assert count(r"Reading the documents \(prefill\): [\d.]+k? / [\d.]+k? tokens", prefill), prefill
                assert count(r"about .* left", prefill), prefill
                chat = [s for s in recorded(page, "chat") if s.strip() not in ("", "\u2026")]
                assert len(set(chat)) >= 2, f"the answer did not stream: {chat}"
                page.screenshot(path=str(screenshots / "jamba-answer.png"))
            else:
                assert figures.group(1) != "0", f"nothing reused from the state cache: {stats}"

        # a follow-up in that chat continues its last prompt: the stats say how much was the chat's own
        text_input(page, "jd-question").fill("And of a 3x3 one?")
        page.click("#jd-ask")
        page.wait_for_function("() => /tokens from cache \\([\\d.]+k? of this chat\\)/.test("
                               "document.querySelector('#jd-answer-stats')?.innerText || '')", timeout=240_000)

        # -- Stop in a new chat while the model reads (documents not cached: a slow prefill) ---------
        text_input(page, "jd-ws-name").fill("Stopped")
        page.click("#jd-ws-create")
        page.wait_for_function("() => document.querySelector('#jd-ws input').value === 'Stopped'")
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "hsaur-inference.pdf")])
        wait_rows(page, 1)
        assert not page.locator("#jd-chat .message-row").count()            # a new chat
        stop_question = "What does the Wilcoxon rank sum test compare?"
        text_input(page, "jd-question").fill(stop_question)
        page.click("#jd-ask")
        page.wait_for_function("() => /Reading the documents/.test(document.querySelector('#jd-prefill')"
                               "?.innerText || '')", timeout=120_000)
        # while it is written, nothing can take the page to another chat, and a second question waits
        for control in ("#jd-ws input", "#jd-chat-pick input", "#jd-new-chat", "#jd-ws-create", "#jd-ws-delete",
                        "#jd-ask"):
            assert page.locator(control).is_disabled(), control
        text_input(page, "jd-question").fill("A second question, sent too early")
        text_input(page, "jd-question").press("Enter")        # ignored: it stays in its box for later
        page.click("#jd-stop")
        page.wait_for_selector("#jd-stopped-note", timeout=180_000)
        page.wait_for_function("() => !document.querySelector('#jd-ws input').disabled", timeout=30_000)
        assert not page.locator("#jd-new-chat").is_disabled()
        page.wait_for_selector("#jd-chat .jd-stopped", timeout=30_000)     # the saved chat, not an empty one
        chat = page.locator("#jd-chat .message-row").all_inner_texts()
        assert len(chat) == 2 and stop_question in chat[0] and "(stopped)" in chat[1], chat
        assert text_input(page, "jd-question").input_value() == "A second question, sent too early"
        assert "stopped before the end" in page.inner_text("#jd-answer-stats")
        open_app(page, server.url)                                          # reload: the same chat
        page.wait_for_selector("#jd-chat .jd-stopped", timeout=30_000)
        assert stop_question in page.inner_text("#jd-chat")
        page.screenshot(path=str(screenshots / "stopped.png"))

        # -- reload mid-answer: the answer is finished without its page, and the page that comes back
        # shows the question at once and the whole answer when it is done; the engine is free after
        text_input(page, "jd-ws-name").fill("Reloaded")
        page.click("#jd-ws-create")
        page.wait_for_function("() => document.querySelector('#jd-ws input').value === 'Reloaded'")
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "debian-history-fr.pdf")])
        wait_rows(page, 1)            # over the context: pages picked to fill it, a slow prefill
        reload_question = "Quand le projet Debian a-t-il commenc\u00e9 ?"
        text_input(page, "jd-question").fill(reload_question)
        page.click("#jd-ask")
        page.wait_for_function("() => /Reading the documents/.test(document.querySelector('#jd-prefill')"
                               "?.innerText || '')", timeout=120_000)
        open_app(page, server.url)                                          # reload
        page.wait_for_function("q => (document.querySelector('#jd-chat')?.innerText || '').includes(q)",
                               arg=reload_question, timeout=30_000)
        page.wait_for_function("() => /first token/.test(document.querySelector('#jd-answer-stats')"
                               "?.innerText || '')", timeout=240_000)
        chat = page.locator("#jd-chat .message-row").all_inner_texts()
        assert len(chat) == 2 and reload_question in chat[0] and "(stopped)" not in chat[1], chat
        page.wait_for_function("() => !document.querySelector('#jd-ws input').disabled", timeout=30_000)
        text_input(page, "jd-question").fill("Et ensuite ?")
        page.click("#jd-ask")
        page.wait_for_function("() => document.querySelectorAll('#jd-chat .message-row').length === 4 && "
                               "/first token/.test(document.querySelector('#jd-answer-stats')?.innerText || '')",
                               timeout=240_000)
        assert workspace(page) == "Reloaded"
    finally:
        context.close()
        server.stop()
