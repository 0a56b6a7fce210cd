"""Token generation: greedy or seeded temperature/top-p sampling, eos ids, stop strings,
max_new_tokens, cancellation, and incremental detokenization that never splits a UTF-8 character."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch import Tensor

from .errors import EngineError
from .model import Cancelled

if TYPE_CHECKING:
    from .engine import Engine
    from .state import HybridState


# K/V rows the prompt's prefill keeps spare for the answer when it makes a new buffer (at most: a
# longer answer grows the buffer as it goes), so decode steps do not copy the whole K/V.
MAX_ANSWER_ROOM = 8192


def sample(logits: Tensor, temperature: float, top_p: float, gen: torch.Generator | None) -> int:
    """logits [V] -> token id; temperature <= 0 is greedy. Sampling runs on the CPU with a CPU
    generator (a CPU generator cannot drive a CUDA multinomial), so a seed gives the same tokens on
    any device."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = (torch.cumsum(sorted_p, 0) - sorted_p) < top_p       # always keeps the top token
        sorted_p = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
        return int(order[torch.multinomial(sorted_p, 1, generator=gen)])
    return int(torch.multinomial(probs, 1, generator=gen))


# Reasoning tags are text to whoever reads the answer (app/reasoning.py splits on them), even where a
# tokenizer marks them special; every other special token (eos, turn markers) is left out of the text.
SHOWN_SPECIAL = ("<think>", "</think>")


def hidden_special_ids(tokenizer) -> frozenset[int]:
    """Ids of the tokenizer's special tokens that decode to no text: all but SHOWN_SPECIAL."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for i, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(i))
    return frozenset(i for i in ids if tokenizer.convert_ids_to_tokens(i) not in SHOWN_SPECIAL)


class IncrementalDecoder:
    """Turns a growing list of ids into text pieces; holds back bytes of an unfinished character."""

    def __init__(self, tokenizer):
        self.tok, self.ids, self.prefix, self.read = tokenizer, [], 0, 0
        self.hidden = hidden_special_ids(tokenizer)

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i not in self.hidden],
                               skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character decodes as U+FFFD here)."""
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return after[len(before):]


class StopMatcher:
    """Holds back text that could begin a stop string; reports the text before a stop string."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """-> (text safe to emit, stopped)."""
        buf = self.held + piece
        hits = [(buf.find(s), s) for s in self.stops if s in buf]
        if hits:
            self.held = ""
            return buf[:min(hits)[0]], True
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), 0, -1):
                if buf.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


class Generation:
    """`for piece in eng.generate(...)` yields text pieces. Afterwards: `token_ids` (generated),
    `text`, `finish_reason` ("eos" | "stop" | "length" | "cancelled"), `state`: the state
    after the prompt and every generated token that was fed back (all but the last one), and
    `prompt_state`: the state after the prompt alone (a later turn of a conversation continues it).
    `max_new_tokens` may be lowered while iterating (read before each new token); prompt and answer
    together never pass the model's context ("length" there)."""

    def __init__(self, eng: "Engine", token_ids: Sequence[int], state: "HybridState | None",
                 max_new_tokens: int, temperature: float, top_p: float, seed: int | None,
                 stop: Sequence[str], cancel: threading.Event | None):
        if len(token_ids) == 0:
            raise EngineError("generate needs at least one prompt token")
        self.eng, self.prompt, self.state0 = eng, list(token_ids), state
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.seed, self.stop, self.cancel = seed, tuple(stop or ()), cancel
        self.token_ids: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self.state: "HybridState | None" = None
        self.prompt_state: "HybridState | None" = None

    def __iter__(self) -> Iterator[str]:
        eng = self.eng
        gen = None
        if self.temperature > 0:
            gen = torch.Generator().manual_seed(self.seed if self.seed is not None else torch.seed())
        decoder, stops = IncrementalDecoder(eng.tokenizer), StopMatcher(self.stop)
        eos = set(eng.eos_token_ids)
        try:
            logits, state = eng.prefill(self.prompt, self.state0, logits="last", cancel=self.cancel,
                                        room=min(self.max_new_tokens, MAX_ANSWER_ROOM))
        except Cancelled:
            self.finish_reason = "cancelled"
            return
        self.state = self.prompt_state = state
        room = eng.max_context - state.n_tokens         # prompt and answer stay within the model's context
        while True:
            if self.cancel is not None and self.cancel.is_set():
                self.finish_reason = "cancelled"
                break
            if len(self.token_ids) >= min(self.max_new_tokens, room):
                self.finish_reason = "length"
                break
            token = sample(logits[-1], self.temperature, self.top_p, gen)
            if token in eos:
                self.finish_reason = "eos"
                break
            self.token_ids.append(token)
            piece, stopped = stops.feed(decoder.push(token))
            if piece:
                self.text += piece
                yield piece
            if stopped:
                self.finish_reason = "stop"
                return
            if len(self.token_ids) < min(self.max_new_tokens, room):
                logits, state = eng.decode_step(token, state)
                self.state = state
        rest, stopped = stops.feed(decoder.flush())
        if stopped:
            self.finish_reason = "stop"
        else:
            rest += stops.flush()
        if rest:
            self.text += rest
            yield rest
