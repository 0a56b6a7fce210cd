"""The real server (`python -m app.cli serve`, as `jambadocs serve`) in a subprocess on a free loopback port."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_server(data_dir: Path, *args: str, env: dict | None = None, timeout: float = 120,
                 port: int | None = None) -> Server:
    """`python -m app.cli serve` on a free loopback port (or `port`) with its own data folder; waits
    until it answers."""
    port = port or free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JAMBADOCS_")}
    clean.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                  "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"})
    clean.update(env or {})
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"server-{port}.log"
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data_dir), *args], cwd=REPO, env=clean, stdout=out,
                            stderr=subprocess.STDOUT)
    out.close()
    server = Server(f"http://127.0.0.1:{port}/", port, data_dir, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{server.url}api/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"server did not answer within {timeout}s:\n{log.read_text(errors='replace')}")
