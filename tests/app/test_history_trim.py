"""drop_oldest_turns: the fewest oldest exchanges, found in O(log n) prompt builds."""
from __future__ import annotations

import random

from app.answerers.base import drop_oldest_turns


def _linear(history, too_long):
    """The plain loop it replaces: drop the oldest exchange until the rest fits."""
    dropped = 0
    while history and too_long(history):
        n = 2 if len(history) > 1 and history[0][0] == "user" and history[1][0] == "assistant" else 1
        history, dropped = history[n:], dropped + n
    return history, dropped


def test_drop_oldest_turns_matches_the_loop_with_few_builds():
    rng = random.Random(0)
    for _ in range(300):
        history = [(rng.choice(["user", "user", "assistant"]), "x" * rng.randint(1, 50))
                   for _ in range(rng.randint(0, 60))]
        limit = rng.randint(0, 1500)
        calls = []

        def too_long(turns):
            calls.append(len(turns))
            return sum(len(t) for _, t in turns) > limit
        assert drop_oldest_turns(history, too_long) == _linear(history, lambda h: sum(len(t) for _, t in h) > limit)
        assert len(calls) <= 2 + max(1, len(history)).bit_length()
