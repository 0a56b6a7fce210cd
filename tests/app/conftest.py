"""Fixtures of the app tests: a Services object on a fresh data folder."""
from __future__ import annotations

import pytest

from app.config import Settings
from app.services import Services


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env(data_dir=tmp_path / "data", engine="extractive")


@pytest.fixture
def svc(settings):
    s = Services(settings)
    yield s
    s.close()
