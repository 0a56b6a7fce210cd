"""Events streamed by `Services.qa.ask`."""
from __future__ import annotations

from dataclasses import dataclass

from app.records import MessageInfo


@dataclass
class AskEvent:
    kind: str                    # "progress" | "thinking" | "token" | "done"
    text: str = ""               # thinking / token: the new piece of reasoning / answer text
    done: int = 0                # progress: units done ...
    total: int = 0               # ... of total
    eta_s: float | None = None   # progress: estimated seconds left
    stage: str = ""              # progress: "queue" | "restore" | "prefill" | "retrieve" | ...
    answer: MessageInfo | None = None   # done: the saved assistant message with its citations
    chat_id: int | None = None   # every event: the chat the exchange is saved to
