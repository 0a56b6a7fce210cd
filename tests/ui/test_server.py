"""ui.server: one app with API + UI, auth on both, upload limit, local-only assets, loopback warning."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.services import Services
from ui.server import create_app, exposure_warning, is_loopback


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                           ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                           ("192.168.1.20", False), ("myhost.example", False)])
def test_loopback_detection(host, loopback):
    assert is_loopback(host) is loopback


def test_warning_only_when_exposed_without_auth():
    warning = exposure_warning("0.0.0.0", None)
    assert warning and "WITHOUT a password" in warning and "--auth" in warning
    assert exposure_warning("0.0.0.0", "ann:secret") is None
    assert exposure_warning("127.0.0.1", None) is None


@pytest.fixture()
def client(tmp_path):
    svc = Services(Settings.from_env(data_dir=tmp_path / "data", engine="extractive", max_upload_bytes=4096))
    with TestClient(create_app(svc, auth="ann:secret")) as c:
        yield c
    svc.close()


def test_auth_guards_ui_and_api(client):
    assert client.get("/config").status_code == 401                 # the UI's config needs a login
    assert client.get("/api/info").status_code == 401               # so does the API
    assert client.post("/login", data={"username": "ann", "password": "nope"}).status_code == 400
    assert client.get("/api/info", auth=("ann", "secret")).json()["engine"] == "extractive"
    assert client.post("/login", data={"username": "ann", "password": "secret"}).status_code == 200
    config = client.get("/config")
    assert config.status_code == 200 and config.json()["title"] == "jambadocs"


def test_upload_limit(client):
    client.post("/login", data={"username": "ann", "password": "secret"})
    big = client.post("/gradio_api/upload", files={"files": ("big.pdf", b"%PDF-" + b"x" * 5000, "application/pdf")})
    assert big.status_code == 413 and "4096" in big.text
    small = client.post("/gradio_api/upload", files={"files": ("small.pdf", b"%PDF-" + b"x" * 100, "application/pdf")})
    assert small.status_code == 200


def test_page_loads_nothing_from_outside(client):
    client.post("/login", data={"username": "ann", "password": "secret"})
    stylesheets = client.get("/config").json().get("stylesheets") or []
    assert all(not str(url).startswith("http") for url in stylesheets), stylesheets
    page = client.get("/").text
    theme = client.get("/theme.css").text
    assert "--font" in theme or "font-family" in theme
    for text in (page, theme):
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text
        assert "cdn.jsdelivr" not in text and "huggingface.co" not in text
