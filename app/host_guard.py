"""Who may talk to the server from a browser: a guard against DNS rebinding and cross-site requests.

DNS rebinding: a page on evil.example has its name re-pointed at 127.0.0.1 and then calls the
server "same-origin", with `Host: evil.example`. Without a password every request would be
answered, so a server without auth answers only the names it is reached by: localhost, loopback
and other IP addresses (an address cannot be re-pointed), the name it is bound to, and the names
the user allows (`serve --allowed-host`, JAMBADOCS_ALLOWED_HOSTS). With a password the name is not
checked (an exposed server is reached by any name, and a re-pointed page has no password).

Cross-site requests, with or without auth: a request whose Origin is not the server's own (or an
allowed name, for a proxy that changes the Host), or a write that Sec-Fetch-Site says comes from
another site, is refused. So a page elsewhere can neither read through CORS nor upload, ask or
delete with a form or a no-cors fetch. Clients that are not browsers send neither header.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_NAMES = ("localhost",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def host_name(host: str) -> str:
    """"Example.COM:7860" -> "example.com", "[::1]:7860" -> "::1" (a Host header's name, lowercase)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_host_names(bound: str, configured: Iterable[str] = ()) -> frozenset[str]:
    """The names a server bound to `bound` answers to without auth (IP addresses always)."""
    return frozenset({*LOCAL_NAMES, host_name(bound), *(host_name(n) for n in configured)} - {""})


class HostGuard:
    """ASGI middleware: refuses (403, JSON error) a request whose Host is not one of `allowed`
    (None: any Host, for a server with auth), and one sent by a page of another site."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None,
                 origins: frozenset[str] = frozenset()) -> None:
        self.app, self.allowed, self.origins = app, allowed, origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.refusal(Headers(scope=scope), scope.get("method", "GET"))
            if refusal:
                await _refuse(scope, receive, send, refusal)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers, method: str) -> str | None:
        """Why a request with these headers is refused, or None."""
        host = headers.get("host", "")
        name = host_name(host)
        if self.allowed is not None and name and name not in self.allowed and not _is_ip(name):
            return (f"this server does not answer to the name {name!r} (a page may have re-pointed "
                    "its name at this machine); open it by http://127.0.0.1 or http://localhost, or "
                    "allow the name with `jambadocs serve --allowed-host NAME`")
        # Cross-site requests: a form or fetch(..., {mode: "no-cors"}) on another site can POST an
        # upload here without a preflight, with the browser's login. A browser names the page's
        # origin (Origin) on every POST, fetch and WebSocket; older ones say Sec-Fetch-Site.
        origin = headers.get("origin")
        if origin is not None:
            if not _same_origin(origin, host) and host_name(urlsplit(origin).netloc) not in self.origins:
                return (f"a request from a page of another site ({origin}) is refused; open jambadocs "
                        "itself, or send the request without a browser")
        elif headers.get("sec-fetch-site") in ("cross-site", "same-site") and method not in SAFE_METHODS:
            return "a request from a page of another site is refused; open jambadocs itself"
        return None


def _same_origin(origin: str, host: str) -> bool:
    """Whether Origin "http://localhost:7860" names the server at Host "localhost:7860"."""
    parts = urlsplit(origin)
    default = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
    return bool(parts.netloc) and parts.netloc.lower().removesuffix(default) == host.strip().lower().removesuffix(default)


async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    if scope["type"] == "websocket":            # close the handshake: 403 to the browser
        await send({"type": "websocket.close", "code": 1008})
        return
    response = JSONResponse({"error": {"reason": "forbidden", "message": message}}, status_code=403)
    await response(scope, receive, send)
