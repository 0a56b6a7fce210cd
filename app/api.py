"""The HTTP API served beside the UI: workspaces, documents, streaming ask (SSE), OpenAI-compatible /v1.

`create_router(services, auth)` returns one APIRouter; `ui.server.serve` includes it in the app that
also mounts Gradio, and `create_app` builds a stand-alone FastAPI app around it for the tests: no
command serves it (`jambadocs serve`, the Docker image and scripts/serve.sh run ui.server's app).
Every route but /api/health and the docs needs the UI's user:password (HTTP Basic, or Bearer
"user:password" as OpenAI clients send their api_key). Errors are JSON {"error": {"reason", "message"}}.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials, HTTPBearer, HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from app.api_auth import AuthSpec, parse_auth
from app.api_errors import ApiError, JsonErrorRoute, as_api_error, error_body, error_response
from app.api_openai import add_openai_routes
from app.api_stream import iterate_in_thread, sse
from app.config import MAX_NEW_TOKENS
from app.documents import clean_filename
from app.errors import StorageError
from app.workspaces import find_by_name

API_VERSION = "1"
DOCS_URL, OPENAPI_URL = "/api/docs", "/api/openapi.json"
_DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}


def _docs_assets_dir() -> Path:
    import fastapi_offline
    return Path(fastapi_offline.__file__).parent / "static"
_UPLOAD_CHUNK = 1 << 20


class WorkspaceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="unique workspace name")


class AskBody(BaseModel):
    question: str = Field(description="the question to answer from the workspace")
    chat_id: int | None = Field(None, description="continue this chat (its history is used)")
    stream: bool = Field(True, description="server-sent events (progress, token, done) or one JSON")
    # checked by app.qa, so a refusal says what `ask --max-new-tokens` says without a server
    max_new_tokens: int | None = Field(None, description=f"answer length limit, 1 to {MAX_NEW_TOKENS} "
                                                         "(default: the server's)")


def create_router(services: Any, auth: AuthSpec = None, local_token: str | None = None) -> APIRouter:
    """All API routes (under /api and /v1) for one Services object, guarded by the UI's auth;
    `local_token`: also accepted as "Bearer <token>" (the CLI on this data folder, app.local_server)."""
    require_user = make_auth_dependency(auth, local_token)
    remove_stale_upload_folders()
    public = APIRouter(route_class=JsonErrorRoute)

    class PrivateRoute(JsonErrorRoute):
        """Checks the credentials and the body's declared size from the headers, before FastAPI
        reads the body: a client without the password cannot make the server read (into memory,
        or spool to disk) a body of any size, and a JSON body over MAX_JSON_BODY is a 413."""

        def get_route_handler(self):
            handler = super().get_route_handler()

            async def checked(request: Request):
                try:
                    require_user(await _basic(request), await _bearer(request))
                    request = _check_body_size(request, _max_upload_bytes(services))
                except Exception as exc:  # noqa: BLE001 -- JSON error, as every other one
                    return error_response(exc)
                return await handler(request)

            return checked

    # the dependency checks again (cheap) and puts the security schemes in the OpenAPI document
    private = APIRouter(route_class=PrivateRoute, dependencies=[Depends(require_user)])

    @public.get("/api/health", tags=["meta"], summary="Liveness check (no auth, loads nothing)")
    def health() -> dict:
        return {"status": "ok", "engine": _engine_name(services),
                "engine_loaded": bool(getattr(services, "answerer_loaded", False))}

    @private.get("/api/info", tags=["meta"], summary="The engine answering questions")
    def info() -> dict:
        return dict(services.engine_info())

    # -- workspaces -------------------------------------------------------------------------
    @private.get("/api/workspaces", tags=["workspaces"], summary="List workspaces")
    def list_workspaces() -> list[dict]:
        return [w.to_dict() for w in services.workspaces.list()]

    @private.post("/api/workspaces", status_code=201, tags=["workspaces"],
                  summary="Create a workspace")
    def create_workspace(body: WorkspaceCreate) -> dict:
        return services.workspaces.create(body.name).to_dict()

    @private.get("/api/workspaces/{workspace}", tags=["workspaces"],
                 summary="One workspace, by id or name")
    def get_workspace(workspace: str) -> dict:
        return find_workspace(services, workspace).to_dict()

    @private.patch("/api/workspaces/{workspace}", tags=["workspaces"], summary="Rename a workspace")
    def rename_workspace(workspace: str, body: WorkspaceCreate) -> dict:
        return services.workspaces.rename(find_workspace(services, workspace).id, body.name).to_dict()

    @private.delete("/api/workspaces/{workspace}", status_code=204, tags=["workspaces"],
                    summary="Delete a workspace with its documents and chats")
    def delete_workspace(workspace: str) -> None:
        services.workspaces.delete(find_workspace(services, workspace).id)

    @private.get("/api/workspaces/{workspace}/budget", tags=["workspaces"],
                 summary="Tokens the documents use against the engine's context")
    def budget(workspace: str) -> dict:
        return services.budget(find_workspace(services, workspace).id).to_dict()

    # -- documents --------------------------------------------------------------------------
    @private.get("/api/workspaces/{workspace}/documents", tags=["documents"],
                 summary="List documents in workspace order")
    def list_documents(workspace: str) -> list[dict]:
        ws = find_workspace(services, workspace)
        return [d.to_dict() for d in services.documents.list(ws.id)]

    @private.post("/api/workspaces/{workspace}/documents", status_code=201, tags=["documents"],
                  summary="Upload documents (multipart field `files`, one or more)",
                  description="201 with the added documents, each with `already_there`: true "
                              "when the same content was in the workspace already (or earlier in "
                              "this upload) and nothing new was added, and `same_name`: the ids of "
                              "other documents with its file name (earlier versions?). When a file cannot be read, "
                              "the others are still added and the answer is the first failure's "
                              "status with {error, added, failed: [{file, reason, message}]}.")
    def upload_documents(workspace: str, files: list[UploadFile] = File(...),
                         password: str | None = Form(None)) -> list[dict]:
        ws = find_workspace(services, workspace)
        limit = _max_upload_bytes(services)
        known = {d.id for d in services.documents.list(ws.id)}
        added, failed = [], []
        for upload in files:        # one bad file does not stop the others
            try:
                info = _add_upload(services, ws.id, upload, password, limit)
                added.append({**info.to_dict(), "already_there": info.id in known,
                              "same_name": [d.id for d in services.documents.namesakes(ws.id, info.id)]})
                known.add(info.id)
            except Exception as exc:  # noqa: BLE001 -- reported per file below
                failed.append((upload.filename, as_api_error(exc)))
        if not failed:
            return added
        status, first = failed[0][1].status, failed[0][1]
        return JSONResponse(status_code=status, content={
            **error_body(first.reason, "; ".join(e.message for _, e in failed)),
            "added": added,
            "failed": [{"file": name, "reason": e.reason, "message": e.message} for name, e in failed]})

    @private.get("/api/workspaces/{workspace}/failures", tags=["documents"],
                 summary="Files dropped in the browser that could not be added after the page went away",
                 description="Kept until dismissed: [{id, filename, reason, message, failed_at}], oldest first.")
    def list_failures(workspace: str) -> list[dict]:
        return [f.to_dict() for f in services.documents.failures(find_workspace(services, workspace).id)]

    @private.delete("/api/workspaces/{workspace}/failures", status_code=204, tags=["documents"],
                    summary="Dismiss the failures (those with id <= up_to when given)")
    def dismiss_failures(workspace: str, up_to: int | None = None) -> None:
        services.documents.dismiss_failures(find_workspace(services, workspace).id, up_to)

    @private.delete("/api/workspaces/{workspace}/documents/{doc_id}", status_code=204,
                    tags=["documents"], summary="Remove a document")
    def remove_document(workspace: str, doc_id: int) -> None:
        services.documents.remove(find_workspace(services, workspace).id, doc_id)

    @private.get("/api/documents/{doc_id}/pages/{number}", tags=["documents"],
                 summary="Text of one page (1-based physical number)")
    def page(doc_id: int, number: int) -> dict:
        return services.documents.page(doc_id, number).to_dict()

    # -- chats and questions ----------------------------------------------------------------
    @private.get("/api/workspaces/{workspace}/chats", tags=["chats"], summary="List chats")
    def list_chats(workspace: str) -> list[dict]:
        return [c.to_dict() for c in services.chats.list(find_workspace(services, workspace).id)]

    @private.delete("/api/chats/{chat_id}", status_code=204, tags=["chats"],
                    summary="Delete a chat and its messages")
    def delete_chat(chat_id: int) -> None:
        services.chats.delete(chat_id)

    @private.get("/api/chats/{chat_id}/messages", tags=["chats"], summary="Messages of a chat")
    def chat_messages(chat_id: int) -> list[dict]:
        return [m.to_dict() for m in services.chats.messages(chat_id)]

    @private.post(
        "/api/workspaces/{workspace}/ask", tags=["chats"],
        summary="Ask a question; streams server-sent events unless stream=false",
        responses={200: {"content": {"text/event-stream": {}, "application/json": {}},
                         "description": "SSE events `progress` {stage, done, total, eta_s, chat_id}, "
                                        "`token` {text}, `done` (the answer JSON, as `ask --json`), "
                                        "`error` {error: {reason, message}}; or the answer JSON"}})
    async def ask(workspace: str, body: AskBody):
        ws = find_workspace(services, workspace)
        cancel = threading.Event()
        stream = await run_in_threadpool(start_ask, services, ws.id, body.question,
                                         chat_id=body.chat_id, cancel=cancel,
                                         max_new_tokens=body.max_new_tokens)
        events = iterate_in_thread(lambda: stream, cancel)
        if body.stream:
            return StreamingResponse(_ask_sse(events), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        async for event in events:
            if event.kind == "done":
                return answer_json(event.answer, event.chat_id)
        raise ApiError(500, "internal", "the engine ended without an answer")

    add_openai_routes(private, services)

    # -- catch-alls and docs ----------------------------------------------------------------
    @public.get(OPENAPI_URL, include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(api_schema(router))

    @public.get(DOCS_URL, include_in_schema=False)
    def docs() -> HTMLResponse:
        assets = f"{DOCS_URL}/assets"
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title="jambadocs API",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon.png")

    @public.get(DOCS_URL + "/assets/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        """Swagger UI's script, stylesheet and icon from the fastapi-offline package, not a CDN:
        the docs page works on a machine with no internet, like the rest of the app."""
        if name not in _DOCS_ASSETS:
            raise ApiError(404, "not_found", f"no docs asset {name!r}")
        return FileResponse(_docs_assets_dir() / name, media_type=_DOCS_ASSETS[name])

    router = APIRouter()
    router.include_router(public)
    router.include_router(private)

    @router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    @router.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    def not_found(rest: str, request: Request) -> JSONResponse:
        allowed = _methods_for(routes, request)
        if allowed:
            return error_response(ApiError(405, "method_not_allowed",
                                           f"{request.method} is not allowed on {request.url.path} "
                                           f"(allowed: {', '.join(allowed)})", headers={"Allow": ", ".join(allowed)}))
        return error_response(ApiError(404, "not_found", f"no API route {request.url.path}"))

    routes = [*public.routes, *private.routes]       # the API's own routes, not the catch-alls
    return router


def _methods_for(routes: list, request: Request) -> list[str]:
    """The methods the routes serve at this request's path (the request's own method is not one)."""
    from starlette.routing import Match

    scope = {**request.scope, "method": "OPTIONS-NONE"}
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods - {"HEAD"})


def create_app(services: Any, auth: AuthSpec = None) -> FastAPI:
    """A FastAPI app serving only the API (the UI server includes the same router), for tests on
    loopback. It has no Host/Origin guard (app.host_guard): no user path serves it; a server built
    on it must add HostGuard as ui.server.create_app does."""
    app = FastAPI(title="jambadocs API", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(create_router(services, auth))
    return app


def api_schema(router: APIRouter) -> dict:
    return get_openapi(title="jambadocs API", version=API_VERSION, routes=router.routes,
                       description=__doc__)


# -- auth ------------------------------------------------------------------------------------

_basic = HTTPBasic(auto_error=False, description="the UI's user and password")
_bearer = HTTPBearer(auto_error=False, description='"user:password" (as an OpenAI api_key)')


def make_auth_dependency(auth: AuthSpec, local_token: str | None = None):
    """A dependency that lets a request through with valid credentials, or the local token (or
    when auth is off)."""
    check = parse_auth(auth)

    def require_user(basic: HTTPBasicCredentials | None = Depends(_basic),
                     bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str | None:
        if check is None:
            return None
        if local_token and bearer is not None and secrets.compare_digest(
                bearer.credentials.encode(), local_token.encode()):
            return "local"
        if basic is not None:
            user, password = basic.username, basic.password
        elif bearer is not None:
            user, _, password = bearer.credentials.partition(":")
        else:
            raise ApiError(401, "unauthorized", "credentials required: HTTP Basic user:password "
                           'or "Authorization: Bearer user:password"',
                           headers={"WWW-Authenticate": 'Basic realm="jambadocs"'})
        if not check(user, password):
            raise ApiError(401, "unauthorized", "wrong user or password",
                           headers={"WWW-Authenticate": 'Basic realm="jambadocs"'})
        return user

    return require_user


# -- helpers shared with the OpenAI routes ---------------------------------------------------

def find_workspace(services: Any, ref: str | int):
    """A workspace by id ("3") or by exact name; 404 when there is none. Digits are an id first:
    the ids the API returns must never reach another workspace that happens to be named "3"."""
    workspaces = services.workspaces.list()
    text = str(ref)
    if text.isdigit():
        for ws in workspaces:
            if ws.id == int(text):
                return ws
    found = find_by_name(workspaces, text)
    if found is not None:
        return found
    names = ", ".join(repr(w.name) for w in workspaces) or "none yet"
    raise ApiError(404, "workspace_not_found", f"no workspace {text!r} (workspaces: {names})")


def start_ask(services: Any, ws_id: int, question: str, *, chat_id: int | None = None,
              history: list[tuple[str, str]] | None = None, cancel: threading.Event | None = None,
              max_new_tokens: int | None = None):
    """Validate and start `services.qa.ask` (errors raise here, before any byte is streamed).

    A `history` (the earlier turns of an OpenAI request) goes to the engine as given; only the
    new exchange is saved (in a new chat unless `chat_id` is given).
    """
    return services.qa.ask(ws_id, question, chat_id=chat_id, cancel=cancel,
                           max_new_tokens=max_new_tokens, history=history)


def answer_json(message: Any, chat_id: int | None = None) -> dict:
    """The answer exactly as the CLI's `ask --json` prints it, plus chat and message ids."""
    from app.cli import ask_json

    return {**ask_json(message), "chat_id": chat_id if chat_id is not None else message.chat_id,
            "message_id": message.id}


def progress_json(event: Any) -> dict:
    return {"stage": event.stage, "done": event.done, "total": event.total, "eta_s": event.eta_s,
            "chat_id": event.chat_id}


async def _ask_sse(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            if event.kind == "progress":
                yield sse(progress_json(event), "progress")
            elif event.kind == "token":
                yield sse({"text": event.text}, "token")
            elif event.kind == "thinking":       # a reasoning model's reasoning, before the answer
                yield sse({"text": event.text}, "thinking")
            elif event.kind == "done":
                yield sse(answer_json(event.answer, event.chat_id), "done")
    except Exception as exc:  # noqa: BLE001 -- the status line is sent already: report in-stream
        err = error_response(exc)
        yield sse(err.body.decode(), "error")


def _engine_name(services: Any) -> str | None:
    """The configured engine, without loading it (a health check must stay cheap)."""
    settings = getattr(services, "settings", None)
    return settings.resolved_engine() if settings is not None else None


MAX_JSON_BODY = 16 * 1024**2       # a question is at most 20,000 characters; an OpenAI history more
MULTIPART_FILES = 32               # an upload request: this many files of the upload limit at most


def _check_body_size(request: Request, upload_limit: int | None) -> Request:
    """413 when the Content-Length header says the body is larger than any valid request. A body
    sent without one (chunked) is counted as it is read: the request returned reads it through a
    receive that stops with 413 once past the limit (else it was read whole into memory, or spooled
    to disk, whatever its size)."""
    if request.headers.get("content-type", "").startswith("multipart/"):
        if not upload_limit:
            return request
        limit = upload_limit * MULTIPART_FILES
    else:
        limit = MAX_JSON_BODY
    length = request.headers.get("content-length")
    if length is None or not length.strip().isdigit():
        return Request(request.scope, _limited_receive(request.receive, limit))
    if int(length) > limit:
        raise ApiError(413, "too_large", f"the request body has {int(length):,} bytes, more than the "
                       f"{limit:,} this route accepts")
    return request


def _limited_receive(receive, limit: int):
    seen = 0

    async def limited() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:      # an HTTPException: FastAPI passes it on as is while reading a body
                raise HTTPException(413, f"the request body is more than the {limit:,} bytes this "
                                         "route accepts")
        return message

    return limited


def _max_upload_bytes(services: Any) -> int | None:
    settings = getattr(services, "settings", None)
    return getattr(settings, "max_upload_bytes", None)


def _add_upload(services: Any, ws_id: int, upload: UploadFile, password: str | None,
                limit: int | None):
    """Copy one uploaded file to a private temp folder (bounded by `limit`) and add it. The copy
    is named by its extension only: the sender's name, which may be longer than a file system takes
    (255 bytes: 64 emoji), is the document's shown name, never a path."""
    name = clean_filename((upload.filename or "").replace("\\", "/"))
    if name in ("", ".", ".."):
        name = "upload"
    suffix = Path(name).suffix
    with _upload_folder(name) as tmp:
        path = tmp / ("upload" + (suffix if len(suffix.encode()) <= 32 else ""))
        size = 0
        try:
            with open(path, "wb") as out:
                while chunk := upload.file.read(_UPLOAD_CHUNK):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise ApiError(413, "too_large",
                                       f"{name}: larger than the upload limit of {limit} bytes")
                    out.write(chunk)
        except OSError as exc:             # a full (or read-only) temp disk
            raise _temp_error(name, exc) from None
        return services.documents.add(ws_id, path, filename=name, password=password or None)


UPLOAD_PREFIX = "jambadocs-upload-"
STALE_UPLOAD_S = 60.0       # a folder this old and unlocked is left by a process killed mid-upload


def _temp_error(name: str, exc: OSError) -> StorageError:
    return StorageError(f"{name}: cannot be received in the temp folder {tempfile.gettempdir()}: "
                        f"{exc.strerror or exc}; free space there, or point TMPDIR at a larger disk")


@contextmanager
def _upload_folder(name: str) -> Iterator[Path]:
    """A private temp folder for one upload, removed after it; flocked while in use, so that
    `remove_stale_upload_folders` (in this or another process) never takes a live upload's."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=UPLOAD_PREFIX))
    except OSError as exc:
        raise _temp_error(name, exc) from None
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def remove_stale_upload_folders(folder: Path | None = None) -> int:
    """Remove the upload folders (`_upload_folder`) of processes killed mid-upload (kill -9, power
    cut) from the temp folder: only this user's, older than STALE_UPLOAD_S and whose flock is free
    (a live upload holds its own). Returns how many."""
    removed = 0
    for path in Path(folder or tempfile.gettempdir()).glob(UPLOAD_PREFIX + "*"):
        try:
            st = path.lstat()
            if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid()
                    or time.time() - st.st_mtime < STALE_UPLOAD_S):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path)
            removed += 1
        except OSError:                   # locked: a live upload (or gone meanwhile)
            pass
        finally:
            os.close(fd)
    return removed
