"""Who may talk to the server from a browser: a guard against DNS rebinding and cross-site requests.

DNS rebinding: a page on evil.example has its name re-pointed at 127.0.0.1 and then calls the
server "same-origin", with `Host: evil.example`. Without a password every request would be
answered, so a server without auth answers only the names it is reached by: localhost, loopback
and other IP addresses (an address cannot be re-pointed), the name it is bound to, and the names
the user allows (`serve --allowed-host`, JAMBADOCS_ALLOWED_HOSTS). With a password the name is not
checked (an exposed server is reached by any name, and a re-pointed page has no password).
"""
from __future__ import annotations

import ipaddress
from typing import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_NAMES = ("localhost",)


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
    (None: any Host, for a server with auth)."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.allowed is not None:
            name = host_name(Headers(scope=scope).get("host", ""))
            if name and name not in self.allowed and not _is_ip(name):   # no Host: not a browser
                await _refuse(scope, receive, send, f"this server does not answer to the name {name!r} "
                              "(a page may have re-pointed its name at this machine); open it by "
                              "http://127.0.0.1 or http://localhost, or allow the name with "
                              "`jambadocs serve --allowed-host NAME`")
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    if scope["type"] == "websocket":            # close the handshake: 403 to the browser
        await send({"type": "websocket.close", "code": 1008})
        return
    response = JSONResponse({"error": {"reason": "forbidden", "message": message}}, status_code=403)
    await response(scope, receive, send)
