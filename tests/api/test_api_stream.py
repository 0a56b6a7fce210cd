"""app/api_stream.iterate_in_thread: an abandoned answer is closed in its own worker thread."""
from __future__ import annotations

import asyncio
import threading
import time

from app.api_stream import iterate_in_thread


def test_a_stream_the_client_leaves_is_closed_in_its_worker_thread():
    """qa.ask saves a stopped answer when its generator is closed. Left open, the generator was closed
    by the garbage collector in whatever thread ran it: once inside another request's database
    session, where the save's write transaction waited on that session's own lock (a hung server)."""
    closed_in: list[str] = []
    cancel = threading.Event()

    def tokens():
        try:
            while True:
                time.sleep(0.01)
                yield "tok"
        finally:
            closed_in.append(threading.current_thread().name)

    generator_refs = []

    def keep(make):                   # the caller still holds the generator, as the API route does
        def make_and_keep():
            g = make()
            generator_refs.append(g)
            return g
        return make_and_keep

    tokens_kept = keep(tokens)

    async def consume_kept():
        items = iterate_in_thread(tokens_kept, cancel)
        async for _ in items:
            break
        await items.aclose()          # what Starlette does when the client hangs up

    asyncio.run(consume_kept())
    deadline = time.monotonic() + 5
    while not closed_in and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cancel.is_set()
    assert closed_in == ["jambadocs-api-answer"], closed_in
    assert generator_refs and generator_refs[0].gi_frame is None     # finished, though still referenced


def test_a_failing_stream_is_re_raised_and_closed():
    def boom():
        yield 1
        raise ValueError("engine failed")

    async def consume():
        got = []
        try:
            async for item in iterate_in_thread(boom):
                got.append(item)
        except ValueError as exc:
            return got, str(exc)
        return got, None

    assert asyncio.run(consume()) == ([1], "engine failed")
