"""The HTTP API over real HTTP on loopback: auth, workspaces, uploads, streaming ask, errors, docs."""
from __future__ import annotations

import base64
import json
import re
import threading
import time

import httpx
import pytest

WS = "stats"


@pytest.fixture(scope="module")
def workspace(server, corpus, credentials, upload_files):
    """A workspace holding hsaur-inference.pdf and debian-history-fr.pdf, uploaded over HTTP."""
    with httpx.Client(base_url=server.url, auth=credentials, timeout=120) as c:
        assert c.post("/api/workspaces", json={"name": WS}).status_code == 201
        r = upload_files(c, WS, corpus / "hsaur-inference.pdf", corpus / "debian-history-fr.pdf")
        assert r.status_code == 201, r.text
        return r.json()


def test_health_needs_no_auth_and_everything_else_does(server, credentials):
    health = httpx.get(f"{server.url}/api/health").json()
    assert health["status"] == "ok" and health["engine"] == "extractive"
    r = httpx.get(f"{server.url}/api/workspaces")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert r.json()["error"]["reason"] == "unauthorized"
    wrong = httpx.get(f"{server.url}/api/workspaces", auth=(credentials[0], "nope"))
    assert wrong.status_code == 401 and "wrong user or password" in wrong.json()["error"]["message"]
    bearer = httpx.get(f"{server.url}/api/workspaces",
                       headers={"Authorization": f"Bearer {credentials[0]}:{credentials[1]}"})
    assert bearer.status_code == 200
    garbled = httpx.get(f"{server.url}/api/workspaces", headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401 and "error" in garbled.json()


def test_workspaces_create_list_get_conflict(client, workspace):
    names = [w["name"] for w in client.get("/api/workspaces").json()]
    assert WS in names
    one = client.get(f"/api/workspaces/{WS}").json()
    assert one["documents"] == 2 and one["pages"] == 15 + 26
    assert client.get(f"/api/workspaces/{one['id']}").json()["name"] == WS   # by id too
    budget = client.get(f"/api/workspaces/{WS}/budget").json()       # the extractive engine: no limit
    assert budget["used"] > 1000 and budget["fits"] and budget["max"] is None and budget["room"] is None
    dup = client.post("/api/workspaces", json={"name": WS})
    assert dup.status_code == 409 and dup.json()["error"]["reason"] == "conflict"
    missing = client.get("/api/workspaces/no-such-space")
    assert missing.status_code == 404
    assert missing.json()["error"]["reason"] == "workspace_not_found"
    client.post("/api/workspaces", json={"name": "scratch"})
    renamed = client.patch("/api/workspaces/scratch", json={"name": "scratch-2"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "scratch-2"
    assert client.delete("/api/workspaces/scratch-2").status_code == 204
    assert client.get("/api/workspaces/scratch-2").status_code == 404
    bad = client.post("/api/workspaces", json={"title": "x"})
    assert bad.status_code == 422 and "name" in bad.json()["error"]["message"]
    # A workspace named like another's id never shadows it: digits are an id first.
    digits = client.post("/api/workspaces", json={"name": str(one["id"])}).json()
    assert client.get(f"/api/workspaces/{one['id']}").json()["name"] == WS
    assert client.get(f"/api/workspaces/{digits['id']}").json()["name"] == str(one["id"])
    assert client.delete(f"/api/workspaces/{digits['id']}").status_code == 204
    assert client.get(f"/api/workspaces/{one['id']}").json()["documents"] == 2


def test_upload_lists_documents_in_order_and_rejects_bad_files(client, workspace, corpus,
                                                               upload_files):
    assert [d["filename"] for d in workspace] == ["hsaur-inference.pdf", "debian-history-fr.pdf"]
    listed = client.get(f"/api/workspaces/{WS}/documents").json()
    assert [(d["index"], d["filename"], d["pages"]) for d in listed] == [
        (1, "hsaur-inference.pdf", 15), (2, "debian-history-fr.pdf", 26)]
    client.post("/api/workspaces", json={"name": "bad-inputs"})
    r = upload_files(client, "bad-inputs", corpus / "fake.pdf", corpus / "empty.pdf",
                     corpus / "pari-refcard.pdf")
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["reason"] == "not_pdf" and "fake.pdf" in body["error"]["message"]
    assert [(f["file"], f["reason"]) for f in body["failed"]] == [("fake.pdf", "not_pdf"),
                                                                 ("empty.pdf", "empty")]
    assert [d["filename"] for d in body["added"]] == ["pari-refcard.pdf"]   # the good one is kept
    locked = upload_files(client, "bad-inputs", corpus / "encrypted.pdf")
    assert locked.status_code == 422 and locked.json()["error"]["reason"] == "encrypted"
    opened = upload_files(client, "bad-inputs", corpus / "encrypted.pdf", password="secret123")
    assert opened.status_code == 201 and opened.json()[0]["pages"] == 26
    client.post("/api/workspaces", json={"name": "odd-names"})
    sneaky = client.post("/api/workspaces/odd-names/documents", files=[
        ("files", ("../../etc/refcard.pdf", (corpus / "pari-refcard.pdf").read_bytes())),
        ("files", ("C:\\Users\\me\\sheet.pdf", (corpus / "latexsheet-de.pdf").read_bytes()))])
    assert [d["filename"] for d in sneaky.json()] == ["refcard.pdf", "sheet.pdf"]   # names only
    # A name longer than a file system takes (255 bytes) is still the document's name, not a 500.
    kangaroos, long = "\U0001f998" * 100 + " notes.pdf", "x" * 300 + ".pdf"
    named = client.post("/api/workspaces/odd-names/documents", files=[
        ("files", (kangaroos, (corpus / "hsaur-inference.pdf").read_bytes())),
        ("files", (long, (corpus / "r-intro.pdf").read_bytes()))])
    assert named.status_code == 201, named.text
    assert [d["filename"] for d in named.json()] == [kangaroos, "x" * 251 + ".pdf"]
    page = client.get(f"/api/documents/{listed[0]['id']}/pages/3").json()
    assert page["number"] == 3 and page["text"]


def test_an_upload_marks_files_whose_content_is_already_there(client, corpus):
    """The same content twice in one upload, or again later, is one document, marked already_there."""
    client.post("/api/workspaces", json={"name": "twice"})
    card, sheet = (corpus / "pari-refcard.pdf").read_bytes(), (corpus / "latexsheet-de.pdf").read_bytes()
    r = client.post("/api/workspaces/twice/documents", files=[
        ("files", ("card.pdf", card)), ("files", ("sheet.pdf", sheet)),
        ("files", ("card copy.pdf", card))])
    assert r.status_code == 201, r.text
    assert [(d["filename"], d["already_there"]) for d in r.json()] == [
        ("card.pdf", False), ("sheet.pdf", False), ("card.pdf", True)]
    assert r.json()[0]["id"] == r.json()[2]["id"]
    again = client.post("/api/workspaces/twice/documents", files=[("files", ("sheet.pdf", sheet))])
    assert [d["already_there"] for d in again.json()] == [True]
    assert len(client.get("/api/workspaces/twice/documents").json()) == 2


def test_an_upload_names_the_documents_it_shares_its_file_name_with(client, corpus):
    """A changed report.pdf uploaded again is a second document (new content): `same_name` gives the
    first one's id, since both are read for every question."""
    client.post("/api/workspaces", json={"name": "versions"})
    first = client.post("/api/workspaces/versions/documents", files=[
        ("files", ("report.pdf", (corpus / "pari-refcard.pdf").read_bytes()))]).json()[0]
    assert first["same_name"] == []
    second = client.post("/api/workspaces/versions/documents", files=[
        ("files", ("report.pdf", (corpus / "latexsheet-de.pdf").read_bytes()))]).json()[0]
    assert second["already_there"] is False and second["same_name"] == [first["id"]]


def test_ask_streams_progress_tokens_and_the_cli_json(client, workspace, sse, extractive_services):
    question = "What does the Wilcoxon signed rank test say about the mooring data?"
    with client.stream("POST", f"/api/workspaces/{WS}/ask", json={"question": question}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [(e, json.loads(d)) for e, d in sse(r)]
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert "token" in kinds and "progress" in kinds
    assert kinds.index("progress") < kinds.index("token")
    done = events[-1][1]
    streamed = "".join(d["text"] for e, d in events if e == "token")
    assert streamed.strip() == done["answer"].strip()   # no <citations> block to strip here
    assert done["engine"] == "extractive" and done["citations"]
    for c in done["citations"]:
        assert set(c) == {"doc", "file", "page", "page_label", "unit", "quote", "verified"}
        assert c["file"] == ("hsaur-inference.pdf", "debian-history-fr.pdf")[c["doc"] - 1]
    assert any(c["verified"] and c["file"] == "hsaur-inference.pdf" for c in done["citations"])
    # the same object the CLI's `ask --json` prints for the saved answer
    from app.cli import ask_json

    saved = extractive_services.chats.messages(done["chat_id"])[-1]
    assert {k: done[k] for k in ("answer", "engine", "citations", "timings", "omitted", "omitted_text", "reasoning")} \
        == ask_json(saved)
    # follow-up in the same chat, without streaming
    again = client.post(f"/api/workspaces/{WS}/ask",
                        json={"question": "Quand le projet Debian a-t-il été fondé ?",
                              "chat_id": done["chat_id"], "stream": False})
    assert again.status_code == 200 and again.json()["chat_id"] == done["chat_id"]
    assert any(c["file"] == "debian-history-fr.pdf" for c in again.json()["citations"])
    assert len(client.get(f"/api/chats/{done['chat_id']}/messages").json()) == 4
    listed = client.get(f"/api/workspaces/{WS}/chats").json()
    assert done["chat_id"] in {c["id"] for c in listed}
    # delete the chat: gone from the list and its messages with it; a second delete is a 404
    assert client.delete(f"/api/chats/{done['chat_id']}").status_code == 204
    assert done["chat_id"] not in {c["id"] for c in client.get(f"/api/workspaces/{WS}/chats").json()}
    gone = client.get(f"/api/chats/{done['chat_id']}/messages")
    assert gone.status_code == 404 and gone.json()["error"]["reason"] == "not_found"
    assert client.delete(f"/api/chats/{done['chat_id']}").status_code == 404


def test_ask_errors_are_json_with_reasons(client, workspace):
    for blank in ("   ", ""):          # "" was a 422 invalid_request, the docs say 400 invalid_input
        empty = client.post(f"/api/workspaces/{WS}/ask", json={"question": blank})
        assert empty.status_code == 400 and empty.json()["error"]["reason"] == "invalid_input"
    missing = client.post("/api/workspaces/nowhere/ask", json={"question": "hi"})
    assert missing.status_code == 404
    client.post("/api/workspaces", json={"name": "empty-space"})
    nothing = client.post("/api/workspaces/empty-space/ask", json={"question": "hi"})
    assert nothing.status_code == 400 and "no documents" in nothing.json()["error"]["message"]
    not_json = client.post(f"/api/workspaces/{WS}/ask", content=b"{", headers={
        "content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"]["reason"] == "invalid_request"
    assert client.get("/api/no/such/route").json()["error"]["reason"] == "not_found"
    # An id or page number past SQLite's 64-bit integers does not exist: a 404, not a 500 OverflowError.
    huge, doc = 2**64, workspace[0]["id"]
    for r in (client.post(f"/api/workspaces/{WS}/ask", json={"question": "hi", "chat_id": huge}),
              client.get(f"/api/chats/{huge}/messages"), client.delete(f"/api/chats/{huge}"),
              client.get(f"/api/documents/{doc}/pages/{huge}"), client.get(f"/api/documents/{huge}/pages/1"),
              client.delete(f"/api/workspaces/{WS}/documents/{huge}"), client.get(f"/api/workspaces/{huge}")):
        assert r.status_code == 404 and r.json()["error"]["reason"].endswith("not_found"), r.text
    assert client.get(f"/api/chats/{huge}/messages").json()["error"]["message"] == f"chat {huge} does not exist"


def test_openapi_docs(server):
    spec = httpx.get(f"{server.url}/api/openapi.json").json()
    assert {"/api/workspaces", "/api/workspaces/{workspace}/documents",
            "/api/workspaces/{workspace}/ask", "/v1/chat/completions", "/v1/models"} <= set(spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert {s["scheme"] for s in schemes.values()} == {"basic", "bearer"}
    page = httpx.get(f"{server.url}/api/docs")
    assert page.status_code == 200 and "/api/openapi.json" in page.text
    # Swagger UI comes from this server, not a CDN: the page works offline
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/api/docs/assets/") for a in assets), assets
    for asset in assets:
        r = httpx.get(f"{server.url}{asset}")
        assert r.status_code == 200 and len(r.content) > 1000, asset
    assert "swagger-ui-bundle.js" in " ".join(assets) and "swagger-ui.css" in " ".join(assets)
    missing = httpx.get(f"{server.url}/api/docs/assets/..%2F..%2Fcore.py")
    assert missing.status_code == 404 and missing.json()["error"]["reason"] == "not_found"


def test_a_wrong_method_is_a_405_naming_the_allowed_ones(client):
    put = client.put("/api/workspaces", json={"name": "x"})
    assert put.status_code == 405 and put.headers["allow"] == "GET, POST", put.text
    assert put.json()["error"]["reason"] == "method_not_allowed" and "allowed: GET, POST" in put.text
    get = client.get("/v1/chat/completions")
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    nothing = client.get("/api/no-such-thing")
    assert nothing.status_code == 404 and nothing.json()["error"]["reason"] == "not_found"


def test_basic_header_built_by_hand(server, credentials):
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    r = httpx.get(f"{server.url}/api/info", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 200 and r.json()["engine"] == "extractive"


def test_a_client_that_hangs_up_cancels_its_question(client, workspace, sse, extractive_services):
    """The engine is busy (we hold the queue); the asker waits, hangs up, and its ask is stopped."""
    queue = extractive_services.queue
    before = set(threading.enumerate())     # Thread objects: an ident is reused once its thread ends
    held = queue.take()
    assert queue.wait(held, 30)
    try:
        with client.stream("POST", f"/api/workspaces/{WS}/ask",
                           json={"question": "What is a t-test?"}) as r:
            event, data = next(sse(r))
            assert event == "progress" and json.loads(data)["stage"] == "queue"
            chat_id = json.loads(data)["chat_id"]
        # hung up: the worker thread must end while the engine is still held
        deadline = time.monotonic() + 30
        while any(t.name == "jambadocs-api-answer" and t not in before
                  for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the abandoned ask is still waiting for the engine"
            time.sleep(0.05)
    finally:
        queue.release(held)
    # the question is kept, marked stopped, with the (empty) answer it had got
    saved = extractive_services.chats.messages(chat_id)
    assert [(m.role, m.text) for m in saved] == [("user", "What is a t-test?"), ("assistant", "")]
    assert saved[1].timings["cancelled"] is True and saved[1].citations == []
    after = client.post(f"/api/workspaces/{WS}/ask", json={"question": "What is a t-test?",
                                                          "stream": False})
    assert after.status_code == 200 and after.json()["citations"]   # the queue moved on


def test_uploads_over_the_size_limit_are_refused(tmp_path, corpus, live, credentials, upload_files):
    from app.config import Settings
    from app.services import Services

    settings = Settings.from_env(data_dir=tmp_path, engine="extractive", max_upload_bytes=300_000)
    with Services(settings) as svc, live(svc, auth=None) as server, \
            httpx.Client(base_url=server.url, timeout=60) as c:    # auth off: no credentials needed
        assert c.post("/api/workspaces", json={"name": "small"}).status_code == 201
        big = upload_files(c, "small", corpus / "r-intro.pdf")           # 632,012 bytes
        assert big.status_code == 413 and big.json()["error"]["reason"] == "too_large"
        assert "r-intro.pdf" in big.json()["error"]["message"]
        ok = upload_files(c, "small", corpus / "hsaur-inference.pdf")   # 101,173 bytes
        assert ok.status_code == 201
        assert [d["filename"] for d in c.get("/api/workspaces/small/documents").json()] == [
            "hsaur-inference.pdf"]


def _raw_request(server, head: str, timeout: float = 10.0) -> str:
    """Send only a request's head (its body is announced, never sent); return the status line."""
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(head.encode())
        return s.recv(4096).decode("latin-1").split("\r\n", 1)[0]


def test_credentials_and_declared_size_are_checked_before_the_body_is_read(server, credentials):
    """Without this, a client without the password made the server read a body of any size first
    (a 150 MB JSON body cost ~400 MB of server memory before its 401)."""
    head = ("POST /api/workspaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 200000000\r\n{auth}\r\n")
    assert " 401 " in _raw_request(server, head.format(auth=""))
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    assert " 413 " in _raw_request(server, head.format(auth=f"Authorization: Basic {token}\r\n"))
    r = httpx.post(f"{server.url}/api/workspaces", auth=credentials, content=b'{"name": "' + b"x" * (17 << 20) + b'"}',
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["reason"] == "too_large"


def test_a_body_sent_without_content_length_is_counted_as_it_is_read(server, credentials):
    """Chunked: no size in the headers, so the body is stopped once past the limit (before, it was
    read whole into memory, any size, and only then refused or validated)."""
    def chunks():
        yield b'{"name": "'
        for _ in range(17):
            yield b"x" * (1 << 20)
        yield b'"}'
    r = httpx.post(f"{server.url}/api/workspaces", auth=credentials, content=chunks(),
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["reason"] == "too_large", r.text
    small = httpx.post(f"{server.url}/api/workspaces", auth=credentials, content=iter([b'{"name": ', b'"chunked"}']),
                       headers={"content-type": "application/json"}, timeout=60)
    assert small.status_code == 201 and small.json()["name"] == "chunked"
    assert httpx.delete(f"{server.url}/api/workspaces/chunked", auth=credentials).status_code == 204


def test_a_workspace_name_in_the_path_is_read_as_names_are_stored(client):
    """Names are stored NFC and trimmed (the CLI looks them up that way); the API compared the path
    as sent, so a decomposed "Café" (what macOS file names and some keyboards produce) was a 404."""
    from urllib.parse import quote
    assert client.post("/api/workspaces", json={"name": "Caf\u00e9 notes"}).status_code == 201
    try:
        for sent in ("Cafe\u0301 notes", " Caf\u00e9 notes "):
            r = client.get(f"/api/workspaces/{quote(sent)}")
            assert r.status_code == 200 and r.json()["name"] == "Caf\u00e9 notes", (sent, r.text)
    finally:
        assert client.delete(f"/api/workspaces/{quote('Caf' + chr(0xe9) + ' notes')}").status_code == 204


def test_a_workspace_name_is_one_name_whatever_its_case(client):
    """The API finds and refuses names as the CLI and the UI do ("Reports" and "reports" are one)."""
    assert client.post("/api/workspaces", json={"name": "Case Notes"}).status_code == 201
    try:
        assert client.get("/api/workspaces/case%20NOTES").json()["name"] == "Case Notes"
        dup = client.post("/api/workspaces", json={"name": "case notes"})
        assert dup.status_code == 409 and "Case Notes" in dup.json()["error"]["message"]
    finally:
        assert client.delete("/api/workspaces/Case%20Notes").status_code == 204


def test_files_that_failed_after_their_page_went_away_are_listed_until_dismissed(client, extractive_services,
                                                                                    corpus):
    """A file of a browser drop that failed after its page went away is kept with the workspace:
    the API lists it (name, reason, message) until dismissed, up to the one a client has seen."""
    ws = client.post("/api/workspaces", json={"name": "dropped"}).json()
    docs = extractive_services.documents
    for name in ("fake.pdf", "encrypted.pdf"):
        assert docs.add_unwatched(ws["id"], corpus / name) is None
    listed = client.get("/api/workspaces/dropped/failures").json()
    assert [(f["filename"], f["reason"]) for f in listed] == [("fake.pdf", "not_pdf"), ("encrypted.pdf", "encrypted")]
    assert listed[0]["message"] and listed[0]["failed_at"]
    assert client.delete(f"/api/workspaces/dropped/failures?up_to={listed[0]['id']}").status_code == 204
    assert [f["filename"] for f in client.get("/api/workspaces/dropped/failures").json()] == ["encrypted.pdf"]
    assert client.delete("/api/workspaces/dropped/failures").status_code == 204
    assert client.get("/api/workspaces/dropped/failures").json() == []
    assert client.get("/api/workspaces/nowhere/failures").status_code == 404


@pytest.mark.parametrize("auth", ["me:", "ann:secret, me:", ("me", "")])
def test_an_empty_password_is_refused(auth):
    """`serve --host 0.0.0.0 --auth me:` served everyone who typed "me", with no exposure warning."""
    from app.api_auth import parse_auth
    with pytest.raises(ValueError, match="auth for user 'me' has an empty password"):
        parse_auth(auth)
    assert parse_auth("me:x")("me", "x") and not parse_auth("me:x")("me", "")


def test_nothing_an_answer_is_being_written_into_can_be_deleted_until_it_is_saved(client, workspace, sse,
                                                                                  extractive_services):
    """An answer in flight (the engine held): its chat, its workspace and the documents it may cite
    are refused with a 409 naming what is busy; the answer is then saved whole, citations and all."""
    queue = extractive_services.queue
    held = queue.take()
    assert queue.wait(held, 30)
    try:
        with client.stream("POST", f"/api/workspaces/{WS}/ask",
                           json={"question": "What is a t-test?"}) as r:
            events = sse(r)
            event, data = next(events)
            assert event == "progress"
            chat_id = json.loads(data)["chat_id"]
            doc_id = client.get(f"/api/workspaces/{WS}/documents").json()[0]["id"]
            for path, busy in ((f"/api/chats/{chat_id}", f"chat {chat_id}"),
                               (f"/api/workspaces/{WS}/documents/{doc_id}", f"document {doc_id}"),
                               (f"/api/workspaces/{WS}", "workspace")):
                refused = client.delete(path)
                assert refused.status_code == 409, (path, refused.text)
                message = refused.json()["error"]["message"]
                assert refused.json()["error"]["reason"] == "conflict" and busy in message
                assert f"being written in chat {chat_id}" in message, message
            queue.release(held)
            held = None
            done = [json.loads(d) for e, d in events if e == "done"]
        assert done and done[0]["citations"], done
    finally:
        if held is not None:
            queue.release(held)
    saved = extractive_services.chats.messages(chat_id)
    assert saved[-1].role == "assistant" and saved[-1].citations
    assert doc_id in {d["id"] for d in client.get(f"/api/workspaces/{WS}/documents").json()}
    assert client.delete(f"/api/chats/{chat_id}").status_code == 204     # saved: now it can go
