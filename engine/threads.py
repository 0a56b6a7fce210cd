"""`one_thread()`: run a stretch of small CPU ops on one intra-op thread.

The scan works on cache-sized tiles, whose ops are too small for a thread team: waking the other
OpenMP threads costs more than they save (with OMP_WAIT_POLICY=PASSIVE a 64K-element multiply-add
took 6x longer on 2 threads than on 1, measured in bench/scan.py). torch's thread count is
process-wide, so concurrent callers share one reference count and the first caller's setting is
restored by the last one out.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

_lock = threading.Lock()
_depth = 0
_saved = 1


@contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    global _depth, _saved
    if not enabled:
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                torch.set_num_threads(_saved)
