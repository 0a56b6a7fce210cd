"""Reasoning models (Jamba Reasoning 3B) answer in two parts: their reasoning in a <think> block,
then the answer. `ThinkingSplitter` cuts a stream of text pieces into the two as it arrives, with a
tag that is split across pieces held back until it is whole.

The prompt may already have opened the block (Jamba Reasoning's template ends its generation
prompt with "<think>"), so the stream starts inside it; a model may also open it itself as the
first thing it writes. Anything else is answer text from the start.
"""
from __future__ import annotations

from ingest.prompt import THINK_CLOSE, THINK_OPEN

# the kinds of the pieces, named as the answer events that carry them (AnswerEvent.kind)
THINKING, ANSWER = "thinking", "token"


class ThinkingSplitter:
    """feed(piece) -> [(kind, text)] with kind THINKING or ANSWER; flush() at the end."""

    def __init__(self, thinking: bool = False) -> None:
        self.state = THINKING if thinking else "start"   # "start": it may still open a block itself
        self._held = ""
        self._answer_started = False     # whitespace right after </think> is not part of the answer
        self.thinking_text = ""
        self.answer_text = ""

    def feed(self, piece: str) -> list[tuple[str, str]]:
        self._held += piece
        out: list[tuple[str, str]] = []
        while self._held:
            if self.state == "start":
                head = self._held.lstrip()
                if head.startswith(THINK_OPEN):
                    self.state, self._held = THINKING, head[len(THINK_OPEN):]
                    continue
                if THINK_OPEN.startswith(head):          # "", "<", "<th": not decided yet
                    break
                self.state = ANSWER
                continue
            if self.state == THINKING:
                at = self._held.find(THINK_CLOSE)
                if at >= 0:
                    self._emit(out, THINKING, self._held[:at])
                    self.state, self._held = ANSWER, self._held[at + len(THINK_CLOSE):]
                    continue
                keep = _partial_tag(self._held, THINK_CLOSE)
                self._emit(out, THINKING, self._held[: len(self._held) - keep])
                self._held = self._held[len(self._held) - keep:]
                break
            text, self._held = self._held, ""
            if not self._answer_started:
                text = text.lstrip()
                self._answer_started = bool(text)
            self._emit(out, ANSWER, text)
        return out

    def flush(self) -> list[tuple[str, str]]:
        """What is still held: answer text, or reasoning that never closed."""
        out: list[tuple[str, str]] = []
        held, self._held = self._held, ""
        kind = THINKING if self.state == THINKING else ANSWER
        if kind == ANSWER and not self._answer_started:
            held = held.lstrip()
        self._emit(out, kind, held)
        return out

    def add_thinking(self, text: str) -> list[tuple[str, str]]:
        """Reasoning that came apart from the text (a server's `reasoning_content`)."""
        out: list[tuple[str, str]] = []
        self._emit(out, THINKING, text)
        return out

    def settled(self) -> tuple[str, str]:
        """(reasoning, answer) once the stream has ended. A server that opened the block in its
        prompt and sends the reasoning inline (no reasoning parser) streams it as answer text up to
        a bare </think>: everything before that tag was reasoning."""
        answer = self.answer_text
        if not self.thinking_text and THINK_CLOSE in answer and THINK_OPEN not in answer:
            before, _, after = answer.partition(THINK_CLOSE)
            return before.strip(), after.lstrip()
        return self.thinking_text.strip(), answer

    def _emit(self, out: list[tuple[str, str]], kind: str, text: str) -> None:
        if not text:
            return
        if kind == THINKING:
            if not self.thinking_text:
                text = text.lstrip()
                if not text:
                    return
            self.thinking_text += text
        else:
            self.answer_text += text
        out.append((kind, text))


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag` (a tag cut in two)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
