"""A running `jambadocs serve` announces itself in its data folder, so the CLI on the same folder
asks through it instead of loading a second engine (a second copy of the weights, on a GPU
usually more than there is room for).

The server writes `<data dir>/server.json` (owner-only, written atomically): its pid, a loopback
URL, a random token its API accepts as `Authorization: Bearer <token>` (so a server with
`--auth` needs no password from a local user who can read the data folder, and thus every
document in it anyway), and the settings that decide its answers. It removes the file when it
stops; a stale file (crash, killed) is ignored because its pid is gone or its URL does not
accept its token.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator
from urllib.parse import quote

from app.config import Settings
from app.errors import AppError, error_from_reason

SERVER_FILE = "server.json"
TOKEN_PREFIX = "jdl_"                    # a local token is recognisable in a log or a config

# The settings that decide what an answer is (model, engine, decoding): a CLI that asks for other
# values than the server's answers in its own process.
ANSWER_SETTINGS = ("engine", "model", "device", "dtype", "quantize", "remote_url", "remote_model",
                   "temperature", "top_p", "seed", "max_thinking_tokens")


@dataclass(frozen=True)
class LocalServer:
    pid: int
    url: str                  # "http://127.0.0.1:7860" (no trailing slash)
    token: str
    settings: dict            # answer_settings() of the server

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def differences(self, requested: dict) -> list[str]:
        """The names in `requested` (settings the CLI was given) whose values the server does not share."""
        return [k for k, v in requested.items() if self.settings.get(k) != v]


def answer_settings(settings: Settings) -> dict:
    """The settings that decide answers, JSON-ready; `engine` is the resolved one (auto -> jamba, ...)."""
    values = {k: getattr(settings, k) for k in ANSWER_SETTINGS}
    values["engine"] = settings.resolved_engine()
    return values


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def connect_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


@contextlib.contextmanager
def announce(settings: Settings, host: str, port: int, token: str) -> Iterator[Path]:
    """Write the server file for as long as the block runs; remove it after, if it is still ours."""
    path = settings.data_dir / SERVER_FILE
    record = {"pid": os.getpid(), "url": connect_url(host, port), "token": token,
              "settings": answer_settings(settings)}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    previous = _read(path)     # a server already running here: its record comes back if we stop first
    _write(path, record)
    try:
        yield path
    finally:
        if _read(path).get("token") == token:        # another server may have taken the folder since
            with contextlib.suppress(OSError):
                if _restorable(previous):
                    _write(path, previous)   # e.g. we could not bind our port: the first server stays found
                else:
                    path.unlink()


def find(settings: Settings, timeout: float = 2.0) -> LocalServer | None:
    """The server running on this data folder, or None (no file, its process is gone, or its URL
    does not accept its token: a stale file, or another program on the port)."""
    import httpx

    record = _read(settings.data_dir / SERVER_FILE)
    try:
        server = LocalServer(pid=int(record["pid"]), url=str(record["url"]).rstrip("/"),
                             token=str(record["token"]), settings=dict(record["settings"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not _alive(server.pid):
        return None
    try:
        reply = httpx.get(f"{server.url}/api/workspaces", headers=server.headers(), timeout=timeout)
    except httpx.HTTPError:
        return None
    return server if reply.status_code == 200 else None


def ask_through(server: LocalServer, workspace: str, question: str, chat_id: int | None = None,
                max_new_tokens: int | None = None) -> Iterator[SimpleNamespace]:
    """Ask through the server's streaming API; yields the events `qa.ask` yields, as namespaces:
    "progress" (stage, done, total, eta_s), "thinking" / "token" (text), and "done" whose
    `answer` is the answer JSON (`app.cli.ask_json` plus chat_id and message_id). Closing the
    iterator (Ctrl-C) hangs up, which stops the answer on the server (saved as stopped)."""
    import httpx
    from httpx_sse import connect_sse

    body = {"question": question, "chat_id": chat_id, "max_new_tokens": max_new_tokens, "stream": True}
    url = f"{server.url}/api/workspaces/{quote(workspace, safe='')}/ask"
    timeout = httpx.Timeout(10.0, read=None)         # a long prefill sends progress, a queue may not
    done = False
    try:
        with httpx.Client(timeout=timeout, headers=server.headers()) as client, \
                connect_sse(client, "POST", url, json=body) as source:
            if source.response.status_code != 200:          # the CLI shows the server's message as its own
                source.response.read()
                raise _error(source.response.text)
            for sse in source.iter_sse():
                data = sse.json()
                if sse.event == "error":
                    raise _error(sse.data)
                if sse.event == "done":
                    done = True
                    yield SimpleNamespace(kind="done", answer=data)
                elif sse.event in ("progress", "token", "thinking"):
                    yield SimpleNamespace(kind=sse.event, **data)
    except httpx.TransportError as exc:                  # killed, restarted, out of memory ...
        raise AppError(f"the server at {server.url} stopped while answering ({type(exc).__name__}); "
                       "ask again (with no server running, ask answers by itself)") from None
    if not done:
        raise AppError(f"the server at {server.url} ended the answer without finishing it; ask again")


def delete_through(server: LocalServer, path: str) -> None:
    """DELETE `path` (e.g. "/api/chats/7") on the server, so its rule applies: what an answer it is
    writing needs is refused (Conflict), as any error of its is, as the app error it stands for."""
    import httpx

    try:
        reply = httpx.delete(f"{server.url}{path}", headers=server.headers(), timeout=60)
    except httpx.TransportError as exc:
        raise AppError(f"the server at {server.url} did not answer ({type(exc).__name__}); try again") from None
    if reply.status_code != 204:
        raise _error(reply.text)


def _error(text: str) -> AppError:
    """The server's JSON error as the app error it stands for (its message, its kind)."""
    try:
        err = json.loads(text)["error"]
        return error_from_reason(str(err["reason"]), str(err["message"]))
    except (ValueError, KeyError, TypeError):
        return AppError(text.strip() or "the server gave no reason")


def _write(path: Path, record: dict) -> None:
    """Write the server file atomically, readable by its owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".server-", suffix=".json")   # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _restorable(record: dict) -> bool:
    """A record of another server process that still runs (not ours, not a crashed one's)."""
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    return pid != os.getpid() and _alive(pid)


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":              # os.kill(pid, 0) would send CTRL_C_EVENT there: ask over HTTP only
        return True
    try:
        os.kill(pid, 0)
    except OSError:                  # gone, or someone else's process: not a server of ours
        return False
    return True
