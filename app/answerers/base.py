"""The one interface every answering engine implements (see docs/interfaces.md)."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ingest import Document


@dataclass
class AnswerRequest:
    documents: list["Document"]        # workspace order (order of addition); pages carry text
    question: str
    history: list[tuple[str, str]] = field(default_factory=list)  # [(role, text)], oldest first
    max_new_tokens: int = 512
    cancel: threading.Event | None = None


@dataclass
class AnswerEvent:
    kind: str                    # "progress" | "thinking" | "token" | "done"
    text: str = ""               # thinking/token: the new piece of reasoning/answer; done: the whole answer
    done: int = 0                # progress: tokens (or pages) done
    total: int = 0               # progress: of total
    eta_s: float | None = None
    stage: str = ""              # progress: "restore" | "prefill" | "retrieve" ...
    timings: dict | None = None  # done: cached_tokens, prefilled_tokens, ttft_s, tokens_per_s, omitted
    reasoning: str = ""          # done: a reasoning model's <think> block (not part of `text`)


# The conversation (earlier turns + question) may take this share of the context; beyond it the oldest
# turns are left out of the prompt (they stay saved), so a long chat never crowds out the documents.
HISTORY_SHARE = 0.5


def drop_oldest_turns(history: Sequence[tuple[str, str]],
                      too_long: Callable[[list[tuple[str, str]]], bool]) -> tuple[list[tuple[str, str]], int]:
    """(kept, dropped): `history` less the fewest oldest exchanges (a user turn with its answer)
    for which `too_long(kept)` is false, or no history at all. A binary search: `too_long` (a
    prompt build) runs O(log n) times, not once per exchange dropped."""
    history = list(history)
    cuts, pos = [0], 0
    while pos < len(history):
        pairs = pos + 1 < len(history) and history[pos][0] == "user" and history[pos + 1][0] == "assistant"
        pos += 2 if pairs else 1
        cuts.append(pos)
    if not history or not too_long(history):
        return history, 0
    lo, hi = 0, len(cuts) - 1              # history[cuts[lo]:] is too long; history[cuts[hi]:] is kept
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if too_long(history[cuts[mid]:]):
            lo = mid
        else:
            hi = mid
    return history[cuts[hi]:], cuts[hi]


def with_dropped_turns(omitted: dict | None, dropped: int) -> dict | None:
    """`omitted` (what an answer left out: {"summary", "documents"}, or None) also saying that the
    `dropped` oldest messages of the chat were left out of the prompt (none: as it was)."""
    if not dropped:
        return omitted
    turns = f"the {dropped} oldest messages of this chat" if dropped > 1 else "the oldest message of this chat"
    out = dict(omitted or {"summary": "", "documents": []})
    out["summary"] = "; ".join(x for x in (out["summary"], f"{turns} (to leave room for the documents)") if x)
    out["history_messages"] = dropped
    return out


@runtime_checkable
class Answerer(Protocol):
    name: str                                   # "extractive" | "jamba" | "remote"

    def info(self) -> dict: ...                 # engine, model, device, dtype, max_context, fingerprint

    def count_tokens(self, text: str) -> int: ...

    def answer(self, req: AnswerRequest) -> Iterator[AnswerEvent]: ...
