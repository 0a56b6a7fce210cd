"""A page left open while the server restarts (same port, same data folder): Gradio keeps the page,
but the server has lost the page's session state (its open workspace and chat). Asking then said
"No workspace is open yet" while one was on screen; now the page's own pickers say which."""
from __future__ import annotations

from app.config import Settings
from app.services import Services
from tests.ui.live_server import start_server
from tests.ui.pages import open_app, text_input, wait_idle, wait_rows


def test_a_page_open_across_a_server_restart_adds_and_asks_in_its_open_chat(chromium, corpus, tmp_path):
    data = tmp_path / "data"
    server = start_server(data, "--engine", "extractive")
    page = chromium.new_context().new_page()
    try:
        open_app(page, server.url)
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "hsaur-inference.pdf")])
        page.wait_for_function("() => /added/.test(document.querySelector('#jd-uploads')?.innerText || '')",
                               timeout=120_000)
        wait_idle(page)
        text_input(page, "jd-question").fill("Wilcoxon rank sum test")
        page.click("#jd-ask")
        page.wait_for_selector("#jd-chat .cite-chip", timeout=60_000)
        wait_idle(page)

        server.stop()
        server = start_server(data, "--engine", "extractive", port=server.port)
        page.set_input_files("#jd-upload input[type=file]", [str(corpus / "pari-refcard.pdf")])
        wait_rows(page, 2)                                   # added to the open workspace
        wait_idle(page)
        text_input(page, "jd-question").fill("Kruskal-Wallis test")
        page.click("#jd-ask")
        page.wait_for_function("() => document.querySelectorAll('#jd-chat .message-row').length === 4",
                               timeout=60_000)
        wait_idle(page)
        assert text_input(page, "jd-question").input_value() == ""
        assert "Kruskal-Wallis test" in page.inner_text("#jd-chat")
    finally:
        page.context.close()
        server.stop()
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        (chat,) = svc.chats.list(svc.workspaces.list()[0].id)        # the open chat, not a new one
        assert [m.text for m in svc.chats.messages(chat.id) if m.role == "user"] == \
            ["Wilcoxon rank sum test", "Kruskal-Wallis test"]
