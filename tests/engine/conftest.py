"""Engine test fixtures: tiny random Jamba checkpoints written once per session."""
from __future__ import annotations

import pytest

from engine.testing import tiny_checkpoint_dir


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Default tiny checkpoint: 4 layers (1 attention), MoE every 2nd layer, GQA 4:2, vocab 512."""
    return tiny_checkpoint_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint):
    from engine import load_engine
    return load_engine(tiny_checkpoint, device="cpu", dtype="float32")
