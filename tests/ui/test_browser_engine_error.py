"""An engine that cannot start: the UI still opens, says why in the header and the gauge, and a question
gets the service's reason instead of a pending answer."""
from __future__ import annotations

from tests.ui.live_server import start_server
from tests.ui.pages import open_app, text_input, wait_idle, wait_rows


def test_missing_checkpoint_is_explained(chromium, corpus, tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    server = start_server(tmp_path / "data", "--engine", "jamba", "--model", str(missing))
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    try:
        open_app(page, server.url)
        engine = page.inner_text("#jd-engine")
        assert "unavailable" in engine and "no-such-checkpoint" in engine, engine

        assert "Cannot count tokens" in page.inner_text("#jd-budget")
        assert "no-such-checkpoint" in page.inner_text("#jd-budget")

        question = "What does the card say about matrices?"
        text_input(page, "jd-question").fill(question)
        page.click("#jd-ask")            # no documents yet: refused, the question stays to be sent later
        page.wait_for_selector(".toast-body.warning", timeout=30_000)
        assert "no documents" in page.inner_text(".toast-body")
        assert text_input(page, "jd-question").input_value() == question
        assert page.locator("#jd-chat .message-row").count() == 0
        page.locator(".toast-body .toast-close").first.click()
        assert page.locator(".error").count() == 0     # no red "Error" status over the panels

        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "pari-refcard.pdf")])
        wait_rows(page, 1)
        wait_idle(page)
        page.click("#jd-ask")
        page.wait_for_function("() => /\u26a0 \\S+/.test(document.querySelector('#jd-chat')?.innerText || '')",
                               timeout=60_000)          # the service's reason, in place of an answer
        assert "no-such-checkpoint" in page.inner_text("#jd-chat")
        assert "\u2026" not in page.inner_text("#jd-chat")    # no answer left pending
        wait_idle(page)
        assert "no-such-checkpoint" in page.inner_text(".toast-body")
        assert text_input(page, "jd-question").input_value() == question    # nothing of it was lost
        assert not page.locator("#jd-ws input").is_disabled()              # unlocked after the failure
    finally:
        page.close()
        server.stop()
