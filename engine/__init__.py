"""Bundled Jamba engine: exact Jamba forward on CPU/GPU with resumable hybrid states.

The names below are imported on first use (PEP 562), so that torch-free parts (`engine.cbuild`,
used by the PDF reader's C loops) load without torch."""
from importlib import import_module

_WHERE = {"JambaConfig": ".config", "Engine": ".engine", "load_engine": ".engine",
          "CheckpointError": ".errors", "EngineError": ".errors", "StateError": ".errors",
          "Generation": ".generate", "Cancelled": ".model", "HybridState": ".state", "state_bytes": ".state"}

__all__ = ["load_engine", "Engine", "HybridState", "EngineError", "CheckpointError", "StateError",
           "JambaConfig", "Generation", "Cancelled", "state_bytes"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
