"""Reasoning text cut from the answer as it streams, whatever the pieces."""
from __future__ import annotations

import random

import pytest

from app.reasoning import ANSWER, THINKING, ThinkingSplitter

CASES = [
    # (the prompt opened <think>, model output, reasoning, answer)
    (True, "The user asks X.\nPage 3 says Y.\n</think>\n\nY, as page 3 says [doc 1, p. 3].",
     "The user asks X.\nPage 3 says Y.\n", "Y, as page 3 says [doc 1, p. 3]."),
    (False, "  <think>\nshort</think>The answer.", "short", "The answer."),
    (False, "No reasoning at all: <think> is just a word here.", "", "No reasoning at all: <think> is just a word here."),
    (False, "<thinking is not the tag", "", "<thinking is not the tag"),
    (True, "never closes the block </thi", "never closes the block </thi", ""),
    (True, "</think>", "", ""),
    (True, "a < b and </ is fine </think> done </think> twice", "a < b and </ is fine ", "done </think> twice"),
    (False, "مرحبا <think> שלום", "", "مرحبا <think> שלום"),
]


def run(thinking: bool, pieces: list[str]) -> tuple[str, str, list[tuple[str, str]]]:
    sp = ThinkingSplitter(thinking)
    events = [e for p in pieces for e in sp.feed(p)] + sp.flush()
    assert sp.thinking_text == "".join(t for k, t in events if k == THINKING)
    assert sp.answer_text == "".join(t for k, t in events if k == ANSWER)
    return sp.thinking_text, sp.answer_text, events


@pytest.mark.parametrize("thinking, output, reasoning, answer", CASES)
def test_any_cut_into_pieces_gives_the_same_parts(thinking, output, reasoning, answer):
    rng = random.Random(7)
    cuts = [[output], list(output)]
    for _ in range(30):
        points = sorted(rng.sample(range(1, len(output)), k=min(len(output) - 1, rng.randint(1, 6))))
        cuts.append([output[a:b] for a, b in zip([0, *points], [*points, len(output)])])
    for pieces in cuts:
        got_reasoning, got_answer, events = run(thinking, pieces)
        assert (got_reasoning, got_answer) == (reasoning.lstrip(), answer), pieces
        kinds = [k for k, _ in events]
        assert kinds == sorted(kinds, key=lambda k: k == ANSWER)      # all reasoning comes first


def test_reasoning_streams_before_the_block_closes():
    sp = ThinkingSplitter(True)
    assert sp.feed("Let me look at page") == [(THINKING, "Let me look at page")]
    assert sp.feed(" 4 </th") == [(THINKING, " 4 ")]                # the cut tag is held back
    assert sp.feed("ink>\n\nIt is") == [(ANSWER, "It is")]
    assert sp.feed(" red.") == [(ANSWER, " red.")]
    assert sp.flush() == []


def test_a_bare_closing_tag_settles_the_reasoning_at_the_end():
    """A server that opened <think> in its prompt and has no reasoning parser streams the reasoning
    as content: once it ends, what came before the bare </think> is the reasoning."""
    sp = ThinkingSplitter()
    for piece in ["The user asks", " about X.\n</th", "ink>\n\nX is red [doc 1, p. 2]."]:
        sp.feed(piece)
    sp.flush()
    assert sp.settled() == ("The user asks about X.", "X is red [doc 1, p. 2].")
    plain = ThinkingSplitter()
    plain.feed("Use <think> and </think> tags.")
    plain.flush()
    assert plain.settled() == ("", "Use <think> and </think> tags.")      # both tags: left alone
