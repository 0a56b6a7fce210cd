"""`jambadocs ask` next to a running `jambadocs serve` on the same data folder asks through the server
(its loaded engine and kept chat state) instead of loading a second engine."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import httpx
import pytest

from app import local_server
from app.cli import main
from app.config import Settings
from app.services import Services
from tests.ui.live_server import free_port, start_server

NOTE = ("The lighthouse keeper logs the weather at dawn and at dusk. In storms he lights the second lamp. "
        "The supply boat comes every second Tuesday, weather permitting.")


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    for name in ("MODEL", "ENGINE", "MAX_NEW_TOKENS", "TEMPERATURE", "SEED"):
        monkeypatch.delenv(f"JAMBADOCS_{name}", raising=False)
    data = tmp_path / "data"

    def _run(*argv: str) -> tuple[int, str, str]:
        code = main(["--data-dir", str(data), *argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    _run.data = data
    return _run


def test_the_server_file_is_owner_only_and_removed_when_the_server_stops(tmp_path):
    settings = Settings.from_env(data_dir=tmp_path / "data", engine="extractive", seed=7)
    with local_server.announce(settings, "0.0.0.0", 7999, "jdl_abc") as path:
        record = json.loads(path.read_text())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert record["pid"] == os.getpid() and record["url"] == "http://127.0.0.1:7999"
        assert record["token"] == "jdl_abc"
        assert record["settings"]["engine"] == "extractive" and record["settings"]["seed"] == 7
    assert not path.exists()
    with local_server.announce(settings, "::1", 7999, "jdl_abc") as path:
        assert json.loads(path.read_text())["url"] == "http://[::1]:7999"
        path.write_text(json.dumps({"token": "jdl_other"}))       # another server took the folder since
    assert path.exists(), "a server removed another server's file"


def test_a_stale_or_foreign_server_file_is_ignored(tmp_path):
    settings = Settings.from_env(data_dir=tmp_path / "data", engine="extractive")
    settings.data_dir.mkdir(parents=True)
    path = settings.data_dir / local_server.SERVER_FILE
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    nobody = f"http://127.0.0.1:{free_port()}"
    for record in ({"pid": dead.pid, "url": nobody, "token": "jdl_x", "settings": {}},     # crashed server
                   {"pid": os.getpid(), "url": nobody, "token": "jdl_x", "settings": {}},  # pid alive, no server
                   {"pid": os.getpid()},                                                  # damaged
                   ["not", "a", "record"]):
        path.write_text(json.dumps(record))
        assert local_server.find(settings, timeout=1) is None, record
    path.write_text("{not json")
    assert local_server.find(settings, timeout=1) is None


def test_ask_goes_through_the_running_server_and_its_loaded_engine(run, tmp_path, monkeypatch):
    from engine.testing import write_tiny_checkpoint

    model = write_tiny_checkpoint(tmp_path / "tiny", max_position_embeddings=4096)
    note = tmp_path / "lighthouse.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert run("ingest", "-w", "w", str(note))[0] == 0
    server = start_server(run.data, "--model", str(model), "--auth", "me:pw")
    try:
        record = json.loads((run.data / local_server.SERVER_FILE).read_text())
        assert record["pid"] == server.proc.pid and record["url"] == server.url.rstrip("/")
        # Others still need the password: the token is only in the owner-only file.
        assert httpx.get(f"{server.url}api/workspaces").status_code == 401
        wrong = {"Authorization": "Bearer jdl_" + "x" * 43}
        assert httpx.get(f"{server.url}api/workspaces", headers=wrong).status_code == 401

        with monkeypatch.context() as m:              # this process must not start an engine
            m.setattr(Services, "answerer", property(lambda self: pytest.fail("the CLI started an engine")))
            code, out, err = run("ask", "-w", "w", "When does the boat come?", "--json", "--max-new-tokens", "6")
            assert code == 0, err
            first = json.loads(out)
            assert first["engine"] == "jamba" and first["message_id"] and first["timings"]["prefilled_tokens"] > 0
            code, out, err = run("ask", "-w", "w", "And in storms?", "--chat", str(first["chat_id"]),
                                 "--max-new-tokens", "6")
            assert code == 0, err
            assert f"[jamba via the server at {server.url.rstrip('/')}; chat {first['chat_id']};" in err, err
            code, out, err = run("ask", "-w", "w", "Who keeps the logs?", "--chat", str(first["chat_id"]),
                                 "--json", "--max-new-tokens", "6")
            third = json.loads(out)
            # The server kept the chat's state after the last prompt: the third turn continued it.
            assert third["timings"]["conversation_tokens"] > 0, third["timings"]
            code, _, err = run("ask", "-w", "w", "Anything?", "--chat", "999")
            assert code == 1 and "chat 999 does not exist" in err, err
            code, out, _ = run("ask", "-w", "w", "Anything?", "--chat", "999", "--json")   # as when asked here
            assert json.loads(out) == {"error": {"reason": "not_found", "message": "chat 999 does not exist"}}
            code, out, _ = run("ask", "-w", "w", "\x07 ", "--json")
            assert code == 1 and json.loads(out)["error"]["reason"] == "invalid_input"

        messages = httpx.get(f"{server.url}api/chats/{first['chat_id']}/messages", auth=("me", "pw")).json()
        assert [m["role"] for m in messages] == ["user", "assistant"] * 3

        # A setting the server does not share: answered here, and said so.
        code, out, err = run("--engine", "extractive", "ask", "-w", "w", "When does the boat come?")
        assert code == 0 and "runs with other settings (engine)" in err and "\n[extractive; chat " in err, err
        code, out, err = run("--model", str(model), "ask", "-w", "w", "When does the boat come?", "--local",
                             "--max-new-tokens", "4")
        assert code == 0 and "\n[jamba; chat " in err and "via the server" not in err, err

        # Ctrl-C hangs up, and the server stops that answer (saved as stopped).
        srv = local_server.find(Settings.from_env(data_dir=run.data))
        events = local_server.ask_through(srv, "w", "Tell me everything.", max_new_tokens=2000)
        chat_id = None
        for ev in events:
            chat_id = chat_id or getattr(ev, "chat_id", None)
            if ev.kind == "token":
                break
        events.close()
        assert chat_id is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msgs = httpx.get(f"{server.url}api/chats/{chat_id}/messages", auth=("me", "pw"), timeout=30).json()
            if len(msgs) == 2:
                break
            time.sleep(0.2)
        assert msgs[1]["timings"].get("cancelled") is True, msgs[1]["timings"]
    finally:
        server.stop()
    assert server.proc.returncode == 128 + 15, server.log.read_text()
    assert not (run.data / local_server.SERVER_FILE).exists(), "SIGTERM left the server file behind"
    code, _, err = run("--engine", "extractive", "ask", "-w", "w", "When does the boat come?")
    assert code == 0 and "via the server" not in err and "other settings" not in err, err


def test_a_second_serve_on_a_port_in_use_fails_in_one_line_and_keeps_the_first(tmp_path):
    """It printed "jambadocs UI on <url>", failed in uvicorn with exit status 3, and on the way out
    deleted the running server's file, so `ask` stopped going through that server."""
    data = tmp_path / "data"
    first = start_server(data)
    try:
        record = (data / local_server.SERVER_FILE).read_text()
        second = subprocess.run([sys.executable, "-m", "ui.server", "--data-dir", str(data), "--port",
                                 str(first.port)], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert second.returncode == 1, second.stderr
        assert second.stderr.strip().splitlines()[-1] == (
            f"jambadocs: error: cannot listen on 127.0.0.1:{first.port}: the port is in use "
            "(another jambadocs serve? choose one with --port)")
        assert "UI on" not in second.stderr
        assert (data / local_server.SERVER_FILE).read_text() == record
        assert httpx.get(f"{first.url}api/health", timeout=5).status_code == 200
    finally:
        first.stop()
    bad_port = subprocess.run([sys.executable, "-m", "app.cli", "--data-dir", str(data), "workspaces"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "JAMBADOCS_PORT": "abc"})
    assert bad_port.returncode == 0 and "Traceback" not in bad_port.stderr     # only `serve` reads it


def test_a_server_that_dies_mid_answer_is_one_clear_error(tmp_path):
    """The CLI printed "RemoteProtocolError: peer closed connection without sending complete message
    body (incomplete chunked read)" when the server was killed while answering."""
    import socket
    import threading

    from app.errors import AppError

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def dying_server():                 # one progress event of a chunked SSE answer, then gone
        conn, _ = listener.accept()
        conn.recv(65536)
        event = b'event: progress\ndata: {"stage": "prefill", "done": 1, "total": 9, "eta_s": null}\n\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + f"{len(event):x}\r\n".encode() + event + b"\r\n")
        conn.close()
    threading.Thread(target=dying_server, daemon=True).start()
    server = local_server.LocalServer(pid=os.getpid(), url=f"http://127.0.0.1:{port}", token="jdl_x", settings={})
    events = local_server.ask_through(server, "w", "question?")
    assert next(events).kind == "progress"
    with pytest.raises(AppError, match=f"the server at http://127.0.0.1:{port} stopped while answering"):
        next(events)
    listener.close()


def test_sigterm_during_a_cli_ask_saves_the_question_as_stopped(tmp_path):
    """Like Ctrl-C: a killed `ask` (kill, docker stop) left an empty, untitled chat and lost the question."""
    import signal

    from engine.testing import BENCH_CONFIG, write_tiny_checkpoint

    model = write_tiny_checkpoint(tmp_path / "model", **BENCH_CONFIG)
    data = tmp_path / "data"
    note = tmp_path / "lighthouse.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert main(["--data-dir", str(data), "ingest", "-w", "w", str(note)]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAMBADOCS_")}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--data-dir", str(data), "--model", str(model),
                             "ask", "-w", "w", "When does the boat come?", "--max-new-tokens", "32768"],
                            env={**env, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE, text=True)
    settings = Settings.from_env(data_dir=data, engine="extractive")
    with Services(settings) as svc:
        ws = svc.workspaces.by_name("w")
        deadline = time.monotonic() + 120
        while not svc.chats.list(ws.id):             # the ask opened its chat: the engine is answering
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        (chat,) = svc.chats.list(ws.id)
        saved = svc.chats.messages(chat.id)
    assert [m.role for m in saved] == ["user", "assistant"] and saved[0].text == "When does the boat come?"
    assert saved[1].timings["cancelled"] is True


def test_max_new_tokens_follows_one_rule_with_and_without_a_server(run, tmp_path):
    """`ask --max-new-tokens N` is accepted or refused alike, in the same words, whether a server
    answers it or this process does (the API refused above 32768 with pydantic's words, a local
    ask took any size; a server's JAMBADOCS_MAX_NEW_TOKENS above it was refused only by the API)."""
    MAX_NEW_TOKENS = 32768                            # the documented limit (app.config.MAX_NEW_TOKENS)
    note = tmp_path / "lighthouse.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert run("ingest", "-w", "w", str(note))[0] == 0
    server = start_server(run.data, "--engine", "extractive")
    try:
        for n, ok in (("0", False), (str(MAX_NEW_TOKENS), True), (str(MAX_NEW_TOKENS + 1), False)):
            outcomes = []
            for where in ((), ("--local",)):
                code, out, err = run("--engine", "extractive", "ask", "-w", "w", "When does the boat come?",
                                     "--json", "--max-new-tokens", n, *where)
                outcomes.append((code, json.loads(out).get("error")))
            assert outcomes[0] == outcomes[1], (n, outcomes)
            assert (outcomes[0][0] == 0) is ok, (n, outcomes)
            if not ok:
                assert outcomes[0][1]["reason"] == "invalid_input"
                assert f"from 1 to {MAX_NEW_TOKENS}" in outcomes[0][1]["message"], outcomes
    finally:
        server.stop()
    with pytest.raises(ValueError, match=f"max_new_tokens must be from 1 to {MAX_NEW_TOKENS}"):
        Settings.from_env(data_dir=run.data, max_new_tokens=MAX_NEW_TOKENS + 1)



def test_the_cli_cannot_delete_what_the_servers_answer_in_flight_needs(run, tmp_path):
    """`chats --delete`, `docs --delete` and `workspaces --delete` deleted in the CLI's own process while
    the server on the same data folder was writing an answer there: the answer then failed ("chat N
    does not exist") or was saved citing a removed document. Now they go through the server's rule:
    exit 1 and a message naming what is busy; nothing is deleted, and the answer is saved."""
    from fastapi import FastAPI

    from app.api import create_router
    from tests.api.conftest import LiveServer

    note = tmp_path / "lighthouse.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert run("ingest", "-w", "w", str(note))[0] == 0
    settings = Settings.from_env(data_dir=run.data, engine="extractive")
    token = local_server.new_token()
    with Services(settings) as svc:
        app = FastAPI()
        app.include_router(create_router(svc, None, token))
        with LiveServer(app) as live, local_server.announce(settings, "127.0.0.1", live.port, token):
            held = svc.queue.take()                    # the engine is busy: the answer waits, in flight
            assert svc.queue.wait(held, 30)
            events = local_server.ask_through(local_server.find(settings), "w", "When does the boat come?")
            try:
                first = next(events)
                chat_id = first.chat_id
                for argv, busy in ((("chats", "-w", "w", "--delete", str(chat_id)), f"chat {chat_id} is busy"),
                                   (("docs", "-w", "w", "--delete", "1"), "is busy"),
                                   (("workspaces", "--delete", "w"), "is busy")):
                    code, out, err = run(*argv)
                    assert code == 1 and busy in err and f"being written in chat {chat_id}" in err, (argv, err)
                    code, out, _ = run(*argv, "--json")
                    assert code == 1 and json.loads(out)["error"]["reason"] == "conflict", out
            finally:
                svc.queue.release(held)
            done = [ev.answer for ev in events if ev.kind == "done"]
            assert done and done[0]["citations"], done          # saved whole, citing the document
            code, out, err = run("chats", "-w", "w", "--delete", str(chat_id))     # saved: now it can go
            assert code == 0 and f"deleted chat {chat_id}" in out, err
