"""The one error type ingestion raises: a reason code plus a message that names the file."""
from __future__ import annotations

from pathlib import Path

REASONS = ("empty", "not_pdf", "corrupt", "encrypted", "no_text", "too_large", "unsupported")


class XmlTooLarge(Exception):
    """An XML part of a document with more elements than can be read in bounded memory (the reader
    turns it into IngestError "too_large", naming the file)."""


class IngestError(ValueError):
    """A document that cannot be read. `reason` is one of `REASONS`; str(err) names the file."""

    def __init__(self, reason: str, path: str | Path, detail: str):
        if reason not in REASONS:
            raise ValueError(f"unknown ingest error reason {reason!r}")
        self.reason = reason
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{Path(path).name}: {detail}")
