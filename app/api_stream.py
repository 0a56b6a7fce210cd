"""Run a blocking event iterator (the engine's answer loop) in its own thread and stream it as SSE."""
from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, AsyncIterator, Callable, Iterator

from fastapi.sse import format_sse_event

_END = object()


async def iterate_in_thread(make_iter: Callable[[], Iterator[Any]],
                            cancel: threading.Event | None = None) -> AsyncIterator[Any]:
    """Yield the items of `make_iter()`, which runs entirely in one worker thread.

    One thread for the whole iteration (not one per item) keeps thread-bound resources such as
    database sessions valid. When the consumer stops early (client gone), `cancel` is set so the
    engine can stop generating, and the iterator is closed in that thread after its next item;
    an exception in the iterator is re-raised here.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # loop closed: nobody is listening any more
            pass

    def work() -> None:
        items = None
        try:
            items = make_iter()
            for item in items:
                put(item)
                if cancel is not None and cancel.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(_Failure(exc))
        finally:
            try:
                # Closed here, in this thread: a generator left open is closed by the garbage
                # collector in whatever thread runs it, and qa.ask's close saves the stopped answer
                # (a write transaction, which inside another request's session waits on itself).
                close = getattr(items, "close", None)
                if close is not None:
                    close()
            finally:
                put(_END)

    thread = threading.Thread(target=work, name="jambadocs-api-answer", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        if cancel is not None:
            cancel.set()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a str."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return format_sse_event(data_str=text, event=event)
