"""Answering engines behind one interface (app/answerers/base.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.errors import EngineUnavailable

if TYPE_CHECKING:
    from app.answerers.base import Answerer
    from app.config import Settings


def make_answerer(settings: "Settings") -> "Answerer":
    """The engine the settings ask for; engines are imported only when chosen."""
    engine = settings.resolved_engine()
    if engine == "extractive":
        from app.answerers.extractive import ExtractiveAnswerer
        return ExtractiveAnswerer()
    if engine == "jamba":
        if not settings.model:
            raise EngineUnavailable("the jamba engine needs a model: set --model or JAMBADOCS_MODEL "
                                    "to a checkpoint folder or hub id")
        from app.answerers.jamba import JambaAnswerer
        return JambaAnswerer(settings)
    if engine == "remote":
        if not settings.remote_url:
            raise EngineUnavailable("the remote engine needs JAMBADOCS_REMOTE_URL")
        from app.answerers.remote import RemoteAnswerer
        return RemoteAnswerer(settings)
    raise EngineUnavailable(f"unknown engine {engine!r}")
