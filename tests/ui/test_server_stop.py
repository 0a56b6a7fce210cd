"""Stopping `jambadocs serve` (Ctrl-C, SIGTERM: docker stop, which kills 10 s later) while an answer
is being written: the server stops the answer, saves the question and what was written, marked
stopped by the server, and exits in time. A real server process, a real signal."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.cli import main
from app.config import Settings
from app.services import Services
from tests.ui.live_server import start_server

NOTE = ("The lighthouse keeper logs the weather at dawn and at dusk. In storms he lights the second lamp. "
        "The supply boat comes every second Tuesday, weather permitting.")
QUESTION = "When does the boat come?"
DOCKER_STOP_S = 10          # docker stop's grace period before SIGKILL


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from engine.testing import BENCH_CONFIG, write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("model"), **BENCH_CONFIG)


def _server_with_a_note(tmp_path, checkpoint):
    """A server on a data folder with workspace "w" holding one note; answers may run long."""
    data = tmp_path / "data"
    note = tmp_path / "lighthouse.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert main(["--data-dir", str(data), "ingest", "-w", "w", str(note)]) == 0
    return start_server(data, "--model", str(checkpoint), env={"JAMBADOCS_MAX_NEW_TOKENS": "20000"})


def _saved(data) -> list:
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        ws = svc.workspaces.by_name("w")
        return [m for c in svc.chats.list(ws.id) for m in svc.chats.messages(c.id)]


def _stops_in_time(server, signum) -> None:
    server.proc.send_signal(signum)
    try:
        server.proc.wait(timeout=DOCKER_STOP_S)
    except subprocess.TimeoutExpired:
        server.stop()
        pytest.fail(f"the server was still running {DOCKER_STOP_S} s after {signal.Signals(signum).name}:\n"
                    + server.log.read_text(errors="replace")[-3000:])


def _collect_answer_events(server, events: list[tuple[str, dict]]) -> None:
    """Ask QUESTION in workspace w through the API, appending each (event, data) of the stream to
    `events` until it ends or the connection drops."""
    try:
        with httpx.stream("POST", f"{server.url}api/workspaces/w/ask", json={"question": QUESTION},
                          timeout=httpx.Timeout(10, read=None)) as reply:
            kind = None
            for line in reply.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
    except httpx.HTTPError:
        pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_api_answer_is_saved_as_stopped_when_the_server_stops(tmp_path, checkpoint, signum):
    server = _server_with_a_note(tmp_path, checkpoint)
    events: list[tuple[str, dict]] = []

    def ask() -> None:
        _collect_answer_events(server, events)

    asker = threading.Thread(target=ask, daemon=True)
    try:
        asker.start()
        deadline = time.monotonic() + 180
        while sum(k == "token" for k, _ in events) < 5:        # the answer is being written
            assert not any(k in ("done", "error") for k, _ in events), events
            assert time.monotonic() < deadline and server.proc.poll() is None, server.log.read_text()
            time.sleep(0.05)
        _stops_in_time(server, signum)
    finally:
        server.stop()
    asker.join(10)
    streamed = "".join(d["text"] for k, d in events if k == "token")
    question, answer = _saved(server.data_dir)
    assert question.role == "user" and question.text == QUESTION
    assert answer.role == "assistant" and answer.timings["cancelled"] is True
    assert answer.timings["stopped_by"] == "the server stopped"
    assert answer.text and streamed.startswith(answer.text[:20].rstrip()), (streamed[:80], answer.text[:80])


def test_a_browser_answer_is_saved_as_stopped_when_the_server_stops(tmp_path, checkpoint, chromium):
    from tests.ui.pages import open_app, recorded, text_input

    server = _server_with_a_note(tmp_path, checkpoint)
    page = chromium.new_context().new_page()
    try:
        open_app(page, server.url)
        text_input(page, "jd-question").fill(QUESTION)
        page.click("#jd-ask")
        page.wait_for_function("() => window.__jd.chat.filter(t => t.trim() && t.trim() !== '\u2026').length >= 3",
                               timeout=180_000)                    # the answer is being written
        assert not page.locator("#jd-answer-stats .jd-warn, #jd-chat .jd-stopped").count()
        shown = recorded(page, "chat")[-1]
        _stops_in_time(server, signal.SIGTERM)
    finally:
        page.context.close()
        server.stop()
    question, answer = _saved(server.data_dir)
    assert question.text == QUESTION
    assert answer.timings["cancelled"] is True and answer.timings["stopped_by"] == "the server stopped"
    assert answer.text and len(answer.text) >= len(shown.strip()) // 2, (shown, answer.text)


SLOW_LOAD = Path(__file__).resolve().parent / "slow_load"     # its sitecustomize slows each tensor read
TENSOR_READ_S = 0.2         # the bench checkpoint's 171 tensors: about 35 s to load, as a real one takes minutes


def _slow_loading_server(data, checkpoint):
    """A server whose every safetensors tensor read waits TENSOR_READ_S first (tests/ui/slow_load)."""
    path = os.pathsep.join(filter(None, [str(SLOW_LOAD), os.environ.get("PYTHONPATH")]))
    server = start_server(data, "--model", str(checkpoint), "--quantize", "int8",
                          env={"PYTHONPATH": path, "SLOW_TENSOR_READ_S": str(TENSOR_READ_S)})
    assert f"slow tensor reads: {TENSOR_READ_S} s each" in server.log.read_text(), server.log.read_text()
    return server


def test_the_server_stops_in_time_while_a_checkpoint_loads(tmp_path, checkpoint):
    """SIGTERM while the engine loaded its checkpoint: the load went on to its end (a request thread
    that started it kept the process alive; the thread of an ask was killed mid-tensor at exit, an
    abort), far past docker stop's 10 s for a real checkpoint (here: tensor reads slowed to about
    35 s in all, stopped after the first layer). Now the load stops at its next tensor,
    the server exits in time, and the question that was waiting is saved as stopped."""
    data = tmp_path / "data"
    note = tmp_path / "lighthouse.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert main(["--data-dir", str(data), "ingest", "-w", "w", str(note)]) == 0
    server = _slow_loading_server(data, checkpoint)
    events: list[tuple[str, dict]] = []

    def ask() -> None:
        _collect_answer_events(server, events)

    def info() -> None:                  # starts the engine in a request's thread (as /budget does)
        try:
            httpx.get(f"{server.url}api/info", timeout=120)
        except httpx.HTTPError:
            pass

    threading.Thread(target=info, daemon=True).start()
    asker = threading.Thread(target=ask, daemon=True)
    try:
        asker.start()
        deadline = time.monotonic() + 180
        while not any(k == "progress" and d["stage"] == "load" and d["done"] >= 1 for k, d in events):
            assert time.monotonic() < deadline and server.proc.poll() is None, server.log.read_text()[-3000:]
            assert not any(k in ("done", "error") for k, _ in events), events
            time.sleep(0.05)
        _stops_in_time(server, signal.SIGTERM)
    finally:
        server.stop()
    asker.join(10)
    assert server.proc.returncode == 128 + signal.SIGTERM, server.log.read_text()[-3000:]   # not an abort
    question, answer = _saved(data)
    assert question.text == QUESTION
    assert answer.text == "" and answer.timings["stopped_by"] == "the server stopped"
