"""An engine that cannot start: the UI still opens, says why in the header and the gauge, and a question
gets the service's reason instead of a pending answer."""
from __future__ import annotations

from tests.ui.live_server import start_server
from tests.ui.pages import open_app, text_input


def test_missing_checkpoint_is_explained(chromium, tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    server = start_server(tmp_path / "data", "--engine", "jamba", "--model", str(missing))
    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    try:
        open_app(page, server.url)
        engine = page.inner_text("#jd-engine")
        assert "unavailable" in engine and "no-such-checkpoint" in engine, engine

        assert "Cannot count tokens" in page.inner_text("#jd-budget")
        assert "no-such-checkpoint" in page.inner_text("#jd-budget")

        text_input(page, "jd-question").fill("What does the card say about matrices?")
        page.click("#jd-ask")
        page.wait_for_function("() => /\u26a0 \\S+/.test(document.querySelector('#jd-chat')?.innerText || '')",
                               timeout=60_000)          # the service's reason, in place of an answer
        assert "\u2026" not in page.inner_text("#jd-chat")    # no answer left pending
    finally:
        page.close()
        server.stop()
