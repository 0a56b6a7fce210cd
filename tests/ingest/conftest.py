"""Fixtures for the ingestion tests: corpus documents read once per session, a tiny tokenizer."""
from __future__ import annotations

from pathlib import Path

import pytest

from ingest import Document, read_document


@pytest.fixture(scope="session")
def read(corpus: Path):
    """read(name, **kw) -> Document, cached per (name, kw) for the session."""
    cache: dict[tuple, Document] = {}

    def _read(name: str, **kw) -> Document:
        key = (name, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = read_document(corpus / name, **kw)
        return cache[key]

    return _read


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The tokenizer of the engine's tiny test checkpoint (Jamba-1.5-style `documents` template)."""
    from transformers import AutoTokenizer

    from engine.testing import write_tiny_checkpoint

    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-jamba"))
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(params=["C", "Python"])
def pdf_checks(request, monkeypatch):
    """The test runs twice: with the page checks' loops in C (ingest/pdf_native.py; skipped without
    a C compiler) and in Python, their reference, as on a machine without one."""
    from ingest import pdf_native

    if request.param == "C" and pdf_native.lib() is None:
        pytest.skip("no C compiler: the checks run in Python")
    if request.param == "Python":
        monkeypatch.setattr(pdf_native, "_lib", None)
        monkeypatch.setattr(pdf_native, "_tried", True)
    return request.param
