"""A file whose name is longer than a file system takes (410 bytes), dropped in the browser, is added
under its whole name (Gradio's own copy of it has the name cut to 200 bytes)."""
from __future__ import annotations

from tests.ui.live_server import start_server
from tests.ui.pages import open_app, report, wait_rows


def test_a_long_file_name_is_kept_whole(chromium, corpus, tmp_path):
    sent = "\U0001f998" * 100 + " notes.pdf"
    # (a file system cannot hold the name: the browser gets the bytes and the name, as from a phone)
    files = [{"name": sent, "mimeType": "application/pdf", "buffer": (corpus / "pari-refcard.pdf").read_bytes()}]
    server = start_server(tmp_path / "data", "--engine", "extractive")
    page = chromium.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    try:
        open_app(page, server.url)
        page.set_input_files("#jd-upload input[type=file]", files)
        [row] = wait_rows(page, 1)
        assert " notes.pdf" in row and "4 pages" in row, row
    except Exception:
        report(page, server)
        raise
    finally:
        server.stop()
