"""The API inside the real server app (ui.server.create_app: Gradio mounted at "/")."""
from __future__ import annotations

import httpx
import openai
from app.config import Settings
from app.services import Services


def test_api_routes_win_over_the_gradio_mount(tmp_path, live_app, credentials):
    from ui.server import create_app as create_server_app

    with Services(Settings.from_env(data_dir=tmp_path, engine="extractive")) as svc:
        svc.workspaces.create("handbook")
        server_app = create_server_app(svc, ":".join(credentials))
        with live_app(server_app) as server:
            assert httpx.get(f"{server.url}/api/health").json()["status"] == "ok"
            assert httpx.get(f"{server.url}/api/workspaces").status_code == 401
            assert httpx.get(f"{server.url}/api/docs").status_code == 200
            missing = httpx.get(f"{server.url}/api/nothing-here", auth=credentials)
            assert missing.json()["error"]["reason"] == "not_found"
            oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=":".join(credentials))
            assert [m.id for m in oai.models.list()] == ["handbook"]
            page = httpx.get(f"{server.url}/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
