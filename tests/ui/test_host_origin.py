"""The real `jambadocs serve` against a hostile web page: DNS rebinding (a foreign Host header)."""
from __future__ import annotations

import httpx
import pytest

from tests.ui.live_server import start_server

# a route of each kind: the API, Gradio's own, the OpenAI-compatible one
ROUTES = ("/api/workspaces", "/config", "/v1/models", "/")


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """A server without auth that also answers to the name docs.lan."""
    server = start_server(tmp_path_factory.mktemp("guard") / "data", "--engine", "extractive",
                          "--allowed-host", "docs.lan")
    try:
        assert httpx.post(f"{server.url}api/workspaces", json={"name": "private"}).status_code == 201
        yield server
    finally:
        server.stop()


def _get(server, path: str, host: str, **kw) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", headers={"Host": host, **kw.pop("headers", {})}, **kw)


@pytest.mark.parametrize("path", ROUTES)
def test_a_rebound_name_is_refused(open_server, path):
    """evil.example re-pointed at 127.0.0.1: the browser sends Host: evil.example:PORT."""
    reply = _get(open_server, path, f"evil.example:{open_server.port}")
    assert reply.status_code == 403, reply.text[:200]
    assert reply.json()["error"]["reason"] == "forbidden" and "evil.example" in reply.json()["error"]["message"]
    assert "private" not in reply.text


def test_a_rebound_name_cannot_delete(open_server):
    port = open_server.port
    reply = httpx.delete(f"http://127.0.0.1:{port}/api/workspaces/private", headers={"Host": f"evil.example:{port}"})
    assert reply.status_code == 403
    assert [w["name"] for w in httpx.get(f"{open_server.url}api/workspaces").json()] == ["private"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "docs.lan", "192.168.1.20"])
@pytest.mark.parametrize("path", ROUTES)
def test_the_names_it_is_reached_by_are_answered(open_server, host, path):
    reply = _get(open_server, path, f"{host}:{open_server.port}")
    assert reply.status_code == 200, reply.text[:200]


def test_with_auth_any_name_needs_the_password(tmp_path):
    """An exposed server is reached by any name; the password guards it (a rebound page has none)."""
    server = start_server(tmp_path / "data", "--engine", "extractive", "--auth", "me:pw")
    try:
        port = server.port
        host = {"Host": f"jambadocs.example:{port}"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/workspaces", headers=host).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/api/workspaces", headers=host, auth=("me", "pw")).json() == []
    finally:
        server.stop()
