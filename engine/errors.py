"""Errors raised by the engine; each message names the file or object and the problem."""
from __future__ import annotations

from pathlib import Path


class EngineError(Exception):
    """Base class for every engine error."""


class CheckpointError(EngineError):
    """A checkpoint folder that cannot be loaded: `path` names the file, `problem` says why."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Cancelled(EngineError):
    """Raised when a prefill, a generation or a checkpoint's load is cancelled through its threading.Event."""


class StateError(EngineError):
    """A hybrid state that belongs to another model, is damaged, or cannot be used as asked."""
