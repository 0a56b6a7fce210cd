"""Fixtures of the API tests: jambadocs' API served by uvicorn on a free 127.0.0.1 port."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import uvicorn

from app.api import create_app
from app.config import Settings
from app.services import Services

USER, PASSWORD = "alice", "s3cret:with-colon"
AUTH = f"{USER}:{PASSWORD}"


class LiveServer:
    """An ASGI app served by uvicorn in a background thread on 127.0.0.1:<free port>."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def remote_ask(server_url: str, model: str, api_key: str, data_dir: Path, document: Path,
               question: str) -> tuple[list, dict]:
    """Ask through the `remote` engine against `server_url` (an OpenAI-compatible /v1), from a
    client workspace holding `document`: (the ask's events, the client's engine info)."""
    from app.answerers.remote import RemoteAnswerer

    remote = RemoteAnswerer(base_url=server_url, model=model, api_key=api_key)
    settings = Settings.from_env(data_dir=data_dir, engine="remote", remote_url=f"{server_url}/v1",
                                 remote_model=model)
    with Services(settings, answerer=remote) as svc:
        ws = svc.workspaces.create("mine")
        svc.documents.add(ws.id, document)
        return list(svc.qa.ask(ws.id, question)), svc.engine_info()


def serve_services(services: Services, auth: str | None = AUTH) -> LiveServer:
    return LiveServer(create_app(services, auth))


@pytest.fixture(scope="module")
def extractive_services(tmp_path_factory) -> Iterator[Services]:
    data = tmp_path_factory.mktemp("api-extractive")
    with Services(Settings.from_env(data_dir=data, engine="extractive")) as svc:
        yield svc


@pytest.fixture(scope="module")
def server(extractive_services) -> Iterator[LiveServer]:
    with serve_services(extractive_services) as live:
        yield live


@pytest.fixture
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, auth=(USER, PASSWORD), timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Jamba checkpoint (HF layout, tokenizer with a documents chat template)."""
    from engine.testing import write_tiny_checkpoint

    return Path(write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-jamba"), seed=0))


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint):
    from engine import load_engine

    return load_engine(tiny_checkpoint, device="cpu")


def sse_events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream response, per the SSE line format."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def upload(client: httpx.Client, workspace: str, *paths: Path, **form) -> httpx.Response:
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    return client.post(f"/api/workspaces/{workspace}/documents", files=files, data=form or None)


@pytest.fixture(scope="session")
def sse():
    """sse(response) -> iterator of (event, data) pairs."""
    return sse_events


@pytest.fixture(scope="session")
def upload_files():
    """upload_files(client, workspace, *paths, **form) -> response of the multipart upload."""
    return upload


@pytest.fixture(scope="session")
def live():
    """live(services, auth=AUTH) -> context manager serving the API on 127.0.0.1:<free port>."""
    return serve_services


@pytest.fixture(scope="session")
def credentials() -> tuple[str, str]:
    return USER, PASSWORD


@pytest.fixture(scope="session")
def live_app():
    """live_app(asgi_app) -> context manager serving any ASGI app on 127.0.0.1:<free port>."""
    return LiveServer
