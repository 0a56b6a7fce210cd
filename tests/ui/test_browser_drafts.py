"""An unsent question (the text in the question box) survives a reload, per workspace, in the
browser's localStorage: a real server (extractive engine), Debian chromium."""
from __future__ import annotations

from tests.ui.live_server import start_server
from tests.ui.pages import open_app, pick, text_input, wait_idle, workspace


def test_an_unsent_question_survives_a_reload_per_workspace(chromium, corpus, tmp_path):
    server = start_server(tmp_path / "data", "--engine", "extractive")
    page = chromium.new_context().new_page()
    question = lambda: text_input(page, "jd-question")          # noqa: E731
    try:
        open_app(page, server.url)
        first = workspace(page)
        question().fill("What does the Wilcoxon test compare, and when")
        page.wait_for_timeout(300)                              # (the draft is kept as it is typed)
        page.reload()
        open_app(page, server.url)
        assert question().input_value() == "What does the Wilcoxon test compare, and when"

        text_input(page, "jd-ws-name").fill("Other")            # another workspace: its own (empty) draft
        page.click("#jd-ws-create")
        page.wait_for_function("() => document.querySelector('#jd-ws input').value === 'Other'")
        wait_idle(page)
        assert question().input_value() == ""
        question().fill("A question for the other workspace")
        page.wait_for_timeout(300)
        pick(page, "jd-ws", first)
        page.wait_for_function("() => document.querySelector('#jd-question textarea, #jd-question input')"
                               ".value === 'What does the Wilcoxon test compare, and when'")
        pick(page, "jd-ws", "Other")
        page.wait_for_function("() => document.querySelector('#jd-question textarea, #jd-question input')"
                               ".value === 'A question for the other workspace'")

        # a question sent is no draft any more: after the answer and a reload the box is empty
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "hsaur-inference.pdf")])
        page.wait_for_function("() => /added/.test(document.querySelector('#jd-uploads')?.innerText || '')",
                               timeout=120_000)
        wait_idle(page)
        page.click("#jd-ask")
        page.wait_for_selector("#jd-answer-stats", timeout=60_000)
        wait_idle(page)
        page.reload()
        open_app(page, server.url)
        assert workspace(page) == "Other" and question().input_value() == ""
    finally:
        page.context.close()
        server.stop()
