"""Fixtures shared by every test package."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("JAMBADOCS_CORPUS", REPO.parent / "shared" / "corpus"))

# Tests run on 2-core machines next to other work: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Every data folder keeps reserved-space (32 MiB of real blocks by default); hundreds of test data
# folders kept by pytest would hold gigabytes. The full-disk tests use the default.
os.environ.setdefault("JAMBADOCS_RESERVE_BYTES", str(1 << 20))


@pytest.fixture(scope="session")
def corpus() -> Path:
    """Folder of real PDFs and bad inputs (see its MANIFEST.md)."""
    if not (CORPUS / "MANIFEST.md").exists():
        pytest.fail(f"test corpus not found at {CORPUS}; set JAMBADOCS_CORPUS")
    return CORPUS
