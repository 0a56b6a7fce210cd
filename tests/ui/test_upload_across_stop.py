"""Files dropped on the page and not yet read when the server stops (Ctrl-C, docker stop, kill -9):
the upload had returned, so they were the user's, but their reading died with the process and
after a restart they were neither documents nor reported failures. Each is now kept in the data
folder before it is read (app.documents.keep) and read at the next start. A real server, a real
browser, real signals."""
from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.ui.live_server import start_server
from tests.ui.pages import open_app


def _files(corpus, folder) -> list:
    """Three versions of the 311-page gnuplot.pdf (each with its own line after its end, which
    readers ignore: three contents), then pari-refcard.pdf: over 3 s of reading, which a stopping
    server (GRACEFUL_S) does not wait for."""
    files = []
    for n in range(1, 4):
        version = folder / f"gnuplot-{n}.pdf"
        version.write_bytes((corpus / "gnuplot.pdf").read_bytes() + f"% version {n}\n".encode())
        files.append(version)
    return files + [corpus / "pari-refcard.pdf"]


def _documents(server) -> tuple[list[str], list[dict]]:
    ws = httpx.get(f"{server.url}api/workspaces", timeout=30).json()[0]["name"]
    docs = httpx.get(f"{server.url}api/workspaces/{ws}/documents", timeout=30).json()
    failures = httpx.get(f"{server.url}api/workspaces/{ws}/failures", timeout=30).json()
    return sorted(d["filename"] for d in docs), failures


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_files_being_read_when_the_server_stops_are_read_at_its_next_start(chromium, corpus, tmp_path, signum):
    data = tmp_path / "data"
    server = start_server(data, "--engine", "extractive")
    page = chromium.new_context().new_page()
    try:
        open_app(page, server.url)
        files = _files(corpus, tmp_path)
        page.set_input_files("#jd-upload input[type=file]", [str(f) for f in files])
        page.wait_for_function("() => /reading page/.test(document.querySelector('#jd-uploads')?.innerText || '')",
                               timeout=120_000)
        server.proc.send_signal(signum)
        server.proc.wait(timeout=20)
        page.context.close()
        server = start_server(data, "--engine", "extractive", port=server.port)
        deadline = time.monotonic() + 120
        while (got := _documents(server)) != (sorted(f.name for f in files), []):
            assert time.monotonic() < deadline, got
            time.sleep(0.5)
    finally:
        server.stop()
    assert not [p for p in (data / "files").iterdir() if p.name.startswith(".tmp-")]
