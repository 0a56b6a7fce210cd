"""The server stopping (Ctrl-C, SIGTERM: docker stop, which kills 10 s later) while an API upload is
read: the read went on to its end in the request's thread, which the process waits for at exit, so
a long document (or OCR) kept it past docker stop's 10 s and it was killed. Now the read stops at
its next page and the client is told, naming the file. A real server, a real signal."""
from __future__ import annotations

import signal
import subprocess
import threading
import time

import httpx

from tests.ui.live_server import start_server

DOCKER_STOP_S = 10


def _long_pdf(corpus, path):
    """gnuplot.pdf's 311 pages eight times over: 2,488 real pages, read in well over 10 s here."""
    import pypdfium2 as pdfium

    src, out = pdfium.PdfDocument(corpus / "gnuplot.pdf"), pdfium.PdfDocument.new()
    for _ in range(8):
        out.import_pages(src)
    out.save(path)
    return path


def test_an_upload_being_read_when_the_server_stops_ends_in_time_and_says_so(corpus, tmp_path):
    pdf = _long_pdf(corpus, tmp_path / "manual.pdf")
    server = start_server(tmp_path / "data", "--engine", "extractive")
    replies: list[httpx.Response] = []

    def upload() -> None:
        try:
            with open(pdf, "rb") as f:
                replies.append(httpx.post(f"{server.url}api/workspaces/w/documents",
                                          files={"files": ("manual.pdf", f)}, timeout=120))
        except httpx.HTTPError:
            pass

    try:
        assert httpx.post(f"{server.url}api/workspaces", json={"name": "w"}, timeout=30).status_code == 201
        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        time.sleep(3)                                  # sent (9 MB on loopback) and being read
        assert not replies
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=DOCKER_STOP_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {DOCKER_STOP_S} s after SIGTERM") from None
        sender.join(10)
    finally:
        server.stop()
    assert server.proc.returncode == 128 + signal.SIGTERM
    (reply,) = replies
    assert reply.status_code == 503, reply.text
    (failed,) = reply.json()["failed"]
    assert failed["file"] == "manual.pdf" and failed["reason"] == "stopping" and "manual.pdf" in failed["message"]
