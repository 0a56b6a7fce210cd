"""app.page_images enters PDFium only under ingest's process-wide PDFIUM_LOCK (PDFium is not
thread-safe: a page render must wait while ingestion reads a PDF, and the other way round)."""
from __future__ import annotations

import threading

from app.page_images import page_count, render_page
from ingest.pdf import PDFIUM_LOCK


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            out["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_render_waits_for_the_ingest_lock(corpus):
    pdf = corpus / "acm-sigconf.pdf"
    with PDFIUM_LOCK:                        # as ingest.pdf holds it while it reads a page
        render, rendered = _in_thread(lambda: render_page(pdf, 1, highlight="ACM"))
        count, counted = _in_thread(lambda: page_count(pdf))
        render.join(1.5)
        count.join(0.1)
        assert render.is_alive() and count.is_alive(), "page_images entered PDFium without the lock"
        assert not rendered and not counted
    render.join(60)
    count.join(60)
    assert "error" not in rendered and "error" not in counted
    assert rendered["value"].page_number == 1 and rendered["value"].image.width > 100
    assert counted["value"] == rendered["value"].page_count == 6
