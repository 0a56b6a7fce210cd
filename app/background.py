"""Run a slow call in a thread while the caller reports its progress (the engine's start-up), and
background threads at the lowest CPU priority."""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def lowest_priority() -> None:
    """Put the calling thread at the lowest CPU priority (nice 19), so that work in the foreground
    (the engine answering) gets the cores first. Linux only, where a thread has its own priority;
    it cannot be raised again: for a thread of its own."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError as exc:
        log.warning("this thread's CPU priority could not be lowered: %s", exc)


def run_with_progress(call: Callable[[], T], progress: Callable[[], Any], show: Callable[[Any], Any],
                      poll_s: float, name: str = "background") -> Generator[Any, None, T]:
    """Run `call()` in a thread; every `poll_s` while it runs, yield `show(progress())` when the
    progress is set and has changed. The generator returns what `call` returned (`x = yield from
    ...`), or raises what it raised, in the caller's thread."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    shown = None
    while worker.is_alive():
        worker.join(poll_s)
        now = progress()
        if worker.is_alive() and now and now != shown:
            shown = now
            yield show(now)
    if "error" in result:
        raise result["error"]
    return result["value"]
