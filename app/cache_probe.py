"""Which documents of a workspace have their prefix state in the state store.

Asks the engine's `cached_documents(documents)` when it has one; otherwise, for the bundled
engine, rebuilds the chain keys of the document prefix the way a question would (preamble,
then each document's segment) and looks up how deep the stored chain goes. Read-only: it
never touches an entry's last use.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def cached_flags(answerer: Any, documents: Sequence[Any], max_new_tokens: int, compute: bool = True) -> list[bool]:
    """One bool per document; all False when the engine keeps no states or cannot tell. Not
    `compute`: the engine's `cached_documents` tokenises no document (those it has no keys of yet
    are taken as not stored)."""
    none = [False] * len(documents)
    if not documents:
        return none
    try:
        probe = getattr(answerer, "cached_documents", None)
        if callable(probe):
            got = [bool(x) for x in (probe(documents) if compute else probe(documents, compute=False))]
            return (got + none)[: len(documents)]
        if getattr(answerer, "name", None) != "jamba":
            return none
        return _jamba_flags(answerer, documents, max_new_tokens)
    except Exception:  # noqa: BLE001 -- a listing must never fail because of this probe
        log.exception("could not tell which documents are cached")
        return none


def _jamba_flags(answerer: Any, documents: Sequence[Any], max_new_tokens: int) -> list[bool]:
    from app.answerers.jamba import computed_by
    from app.state_store import chain_keys
    from ingest.prompt import PROMPT_FORMAT_VERSION

    engine = answerer.engine
    seg = answerer.builder.build(list(documents), "", history=[])
    if len(seg) > engine.max_context - max_new_tokens:
        return [False] * len(documents)      # does not fit: pages are picked per question
    segments = [(None, list(seg.preamble))] + [(i, list(ids)) for i, ids in enumerate(seg.documents)]
    kept = [(i, ids) for i, ids in segments if ids]
    keys = chain_keys(computed_by(engine), PROMPT_FORMAT_VERSION, [ids for _, ids in kept])
    depth = answerer.store.stored_depth(keys)
    flags: list[bool] = []
    for doc in range(len(documents)):
        # segments needed up to and including this document's (an empty one needs those before it)
        needed = sum(1 for i, _ in kept if i is None or i <= doc)
        flags.append(depth >= needed)
    return flags
