"""A first-come-first-served lock: the one engine serves asks in the order they arrive."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class EngineQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._serving = 0          # ticket now holding the engine
        self._next = 0             # next ticket to hand out
        self._abandoned: set[int] = set()   # tickets given up before their turn

    def take(self) -> int:
        """A ticket; call `wait` with it, then `release` exactly once."""
        with self._cond:
            t = self._next
            self._next += 1
            return t

    def ahead(self, ticket: int) -> int:
        """How many asks are served before this ticket (0 = its turn)."""
        with self._cond:
            return max(0, ticket - self._serving)

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        """Block until it is this ticket's turn (True) or `timeout` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._serving == ticket, timeout)

    def release(self, ticket: int) -> None:
        with self._cond:
            if ticket == self._serving:
                self._serving += 1
            else:                          # left the queue before its turn: skip it when reached
                self._abandoned.add(ticket)
            while self._serving in self._abandoned:
                self._abandoned.discard(self._serving)
                self._serving += 1
            self._cond.notify_all()

    @contextmanager
    def turn(self) -> Iterator[None]:
        t = self.take()
        try:
            self.wait(t)
            yield
        finally:
            self.release(t)
