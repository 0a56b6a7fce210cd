"""Errors the services raise (besides ingest.IngestError for unreadable documents)."""
from __future__ import annotations


class AppError(Exception):
    """Base of the app's own errors; str(err) is one line saying what and why."""


class NotFound(AppError):
    """A workspace, document, chat or page that does not exist."""


class Conflict(AppError):
    """A name already taken."""


class InvalidInput(AppError):
    """A request that cannot be served as given (empty question, bad name, file too large...)."""


class EngineUnavailable(AppError):
    """The configured engine cannot be started (no checkpoint, no server...)."""


class StorageError(AppError):
    """The data folder cannot take a write (disk full, read-only, locked too long)."""
