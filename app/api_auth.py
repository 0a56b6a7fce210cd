"""Credentials for the HTTP API: the same user:password as the UI, as HTTP Basic or Bearer "user:password"."""
from __future__ import annotations

import secrets
from typing import Callable, Iterable, Union

AuthSpec = Union[None, str, tuple, list, Callable[[str, str], bool]]


def parse_auth(auth: AuthSpec) -> Callable[[str, str], bool] | None:
    """Turn the UI's auth setting into a checker `(user, password) -> bool`; None means no auth.

    Accepts "user:password" (several separated by commas), a (user, password) tuple, a list of
    tuples or strings (Gradio's forms), or a callable (user, password) -> bool.
    """
    if auth is None or auth == "" or auth == []:
        return None
    if callable(auth):
        return lambda user, password: bool(auth(user, password))
    pairs = list(_pairs(auth))
    if not pairs:
        raise ValueError("auth is set but names no user:password pair")
    for user, password in pairs:     # "me:" let in anyone who typed the name, and silenced the
        if not password:             # warning of a server exposed without a password
            raise ValueError(f"auth for user {user!r} has an empty password")

    def check(user: str, password: str) -> bool:
        ok = False
        for u, p in pairs:  # compare with every pair: the time taken does not tell which user exists
            ok |= secrets.compare_digest(u.encode(), user.encode()) & secrets.compare_digest(
                p.encode(), password.encode())
        return ok

    return check


def _pairs(auth: str | tuple | Iterable) -> Iterable[tuple[str, str]]:
    if isinstance(auth, str):
        for item in auth.split(","):
            item = item.strip()
            if item:
                yield _split(item)
    elif isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(x, str) for x in auth):
        yield auth[0], auth[1]
    else:
        for item in auth:
            yield from _pairs(item)


def _split(item: str) -> tuple[str, str]:
    user, sep, password = item.partition(":")
    if not sep or not user:
        raise ValueError("auth must look like user:password")
    return user, password
