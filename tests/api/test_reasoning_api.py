"""A reasoning checkpoint (Jamba Reasoning's template layout, tiny random weights) behind the HTTP
API: its reasoning reaches clients apart from the answer, as "thinking" SSE events, as OpenAI's
`reasoning_content`, and through the `remote` engine on the other side."""
from __future__ import annotations

import json

import httpx
import pytest

from app.config import Settings
from app.services import Services
from tests.api.conftest import AUTH, remote_ask, serve_services


@pytest.fixture(scope="module")
def reasoning_server(tmp_path_factory, corpus):
    from engine.testing import REASONING_TEMPLATE, write_tiny_checkpoint

    root = tmp_path_factory.mktemp("reasoning-api")
    folder = write_tiny_checkpoint(root / "ckpt", seed=3, chat_template=REASONING_TEMPLATE)
    settings = Settings.from_env(data_dir=root / "data", model=str(folder), engine="jamba", device="cpu",
                                 max_new_tokens=3, max_thinking_tokens=4)
    with Services(settings) as svc:
        ws = svc.workspaces.create("notes")
        svc.documents.add(ws.id, corpus / "acm-sigconf.pdf")
        with serve_services(svc) as live:
            yield live


def test_reasoning_streams_apart_from_the_answer(reasoning_server, sse):
    user, password = AUTH.split(":", 1)
    with httpx.Client(base_url=reasoning_server.url, auth=(user, password), timeout=300) as c:
        with c.stream("POST", "/api/workspaces/notes/ask", json={"question": "What is this?"}) as r:
            assert r.status_code == 200
            events = [(e, json.loads(d)) for e, d in sse(r)]
        kinds = [e for e, _ in events if e in ("thinking", "token")]
        assert kinds[0] == "thinking" and "token" in kinds
        done = events[-1][1]
        assert done["reasoning"] == "".join(d["text"] for e, d in events if e == "thinking").strip()
        assert done["answer"] == "".join(d["text"] for e, d in events if e == "token")

        body = {"model": "notes", "messages": [{"role": "user", "content": "What is this?"}]}
        plain = c.post("/v1/chat/completions", json=body).json()
        message = plain["choices"][0]["message"]
        assert message["reasoning_content"] and "<think>" not in message["content"]
        with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            chunks = [json.loads(d) for e, d in sse(r) if d != "[DONE]"]
        deltas = [ch["choices"][0]["delta"] for ch in chunks if ch["choices"]]
        reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
        content = "".join(d.get("content", "") for d in deltas)
        assert reasoning.strip() == message["reasoning_content"] and content == message["content"]

        # the bundled model itself (model "engine"): its chat template opens the block too
        raw = c.post("/v1/chat/completions", json={**body, "model": "engine", "max_tokens": 4}).json()
        message = raw["choices"][0]["message"]
        assert message["reasoning_content"] and "</think>" not in message["content"]


def test_the_remote_engine_receives_the_reasoning(reasoning_server, corpus, tmp_path):
    events, _ = remote_ask(reasoning_server.url, "notes", AUTH, tmp_path / "client", corpus / "acm-sigconf.pdf",
                           "What is this?")
    answer = events[-1].answer
    assert any(e.kind == "thinking" for e in events)
    assert answer.reasoning == "".join(e.text for e in events if e.kind == "thinking").strip()
    assert "<think>" not in answer.text and "</think>" not in answer.text
