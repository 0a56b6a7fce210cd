"""Errors the services raise (besides ingest.IngestError for unreadable documents)."""
from __future__ import annotations


class AppError(Exception):
    """Base of the app's own errors; str(err) is one line saying what and why."""


class NotFound(AppError):
    """A workspace, document, chat or page that does not exist."""


class Conflict(AppError):
    """A name already taken, or something busy (an answer being written in it)."""


class InvalidInput(AppError):
    """A request that cannot be served as given (empty question, bad name, file too large...)."""


class EngineUnavailable(AppError):
    """The configured engine cannot be started (no checkpoint, no server...)."""


class StorageError(AppError):
    """The data folder cannot take a write (disk full, read-only, locked too long)."""


class Stopping(AppError):
    """The process is stopping (Ctrl-C, SIGTERM): the work asked for was left off."""


_REASONS = ((NotFound, "not_found"), (Conflict, "conflict"), (InvalidInput, "invalid_input"),
            (EngineUnavailable, "engine_unavailable"), (StorageError, "storage"), (Stopping, "stopping"))


def error_reason(exc: BaseException) -> str:
    """One word for what went wrong, as JSON errors give it (the API's, `--json`'s): an
    ingest.IngestError's own reason (`empty`, `encrypted`, ...), else the app error's kind."""
    reason = getattr(exc, "reason", None)
    if type(exc).__name__ == "IngestError" and isinstance(reason, str):
        return reason
    return next((word for cls, word in _REASONS if isinstance(exc, cls)), "error")


def error_from_reason(reason: str, message: str) -> AppError:
    """The app error a JSON error's reason stands for (a plain AppError for any other reason):
    a server's error, raised in the CLI, keeps its kind."""
    cls = next((c for c, word in _REASONS if word == reason), AppError)
    return cls(message)
