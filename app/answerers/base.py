"""The one interface every answering engine implements (see docs/interfaces.md)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
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


@runtime_checkable
class Answerer(Protocol):
    name: str                                   # "extractive" | "jamba" | "remote"

    def info(self) -> dict: ...                 # engine, model, device, dtype, max_context, fingerprint

    def count_tokens(self, text: str) -> int: ...

    def answer(self, req: AnswerRequest) -> Iterator[AnswerEvent]: ...
