"""Imported at start-up by a server subprocess that has this folder on PYTHONPATH (tests/ui/
test_server_stop.py): every tensor read through safetensors' safe_open first waits
SLOW_TENSOR_READ_S seconds, so a small checkpoint loads as slowly as a real one, in a controlled way."""
import os
import sys
import time

import safetensors

DELAY_S = float(os.environ.get("SLOW_TENSOR_READ_S", "0"))
_safe_open = safetensors.safe_open


class _SlowSafeOpen:
    """safe_open whose get_tensor waits DELAY_S first; everything else is the real handle's."""

    def __init__(self, *args, **kwargs):
        self._handle = _safe_open(*args, **kwargs)

    def __enter__(self):
        self._handle.__enter__()
        return self

    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def get_tensor(self, name):
        time.sleep(DELAY_S)
        return self._handle.get_tensor(name)


if DELAY_S > 0:
    safetensors.safe_open = _SlowSafeOpen
    print(f"slow tensor reads: {DELAY_S} s each", file=sys.stderr, flush=True)
