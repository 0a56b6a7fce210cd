"""A conversation on cached documents: each turn continuing the last prompt's state vs re-reading the history.

    python bench/conversation.py [--doc-tokens 16384] [--turns 6] [--answer-tokens 256] [--threads 1]

Tiny random checkpoint (bench/engine.py's shape, fp32) and real corpus pages of about
`--doc-tokens` tokens (bench/cache.py's documents). One chat of `--turns` questions, each answer
`--answer-tokens` long (the random model's text, kept as the chat history). Every turn after the
first is asked twice in the same process, the documents' state in RAM both times:

* **baseline, history re-read**: the answerer's kept turn state is dropped first, so the whole
  conversation (every earlier question and answer) is prefilled again, as every follow-up was
  before 2026-11-28;
* **continued**: the state after the previous turn's prompt is continued (app/answerers/jamba.py
  `_Turn`), so only the last answer and the new question are prefilled.

Prints, per turn, each one's TTFT and prefilled tokens and the ratio baseline / continued, and
checks that both give the same answer. One thread by default (see bench/cache.py).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cache import BENCH_CONFIG, make_documents  # noqa: E402

QUESTIONS = ["Which command sets the title of a plot?", "And how is the key placed?", "Which page shows it?",
             "How do I change the axis range?", "Can the labels be rotated?", "What about colours?",
             "How is a histogram drawn?", "And a box plot?"]


def ask(answerer, docs, question: str, history: list, max_new_tokens: int) -> dict:
    from app.answerers.base import AnswerRequest

    t0, ttft, done = time.perf_counter(), None, None
    for ev in answerer.answer(AnswerRequest(docs, question, list(history), max_new_tokens=max_new_tokens)):
        if ev.kind == "token" and ttft is None:
            ttft = time.perf_counter() - t0
        if ev.kind == "done":
            done = ev
    return {"text": done.text, "ttft_s": ttft if ttft is not None else done.timings["ttft_s"],
            "prefilled": done.timings["prefilled_tokens"], "cached": done.timings["cached_tokens"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--doc-tokens", type=int, default=16384)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--answer-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from app.answerers.jamba import JambaAnswerer
    from app.config import Settings
    from engine.testing import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = write_tiny_checkpoint(work / "ckpt", seed=0, **dict(BENCH_CONFIG, max_position_embeddings=65536))
        ans = JambaAnswerer(Settings(data_dir=work / "data", model=str(ckpt), engine="jamba",
                                     cache_bytes=16 * 1024**3))
        docs = make_documents(ans.engine.tokenizer, a.doc_tokens, a.doc_tokens)
        print(f"tiny checkpoint (bench shape, fp32), {a.threads} thread(s); documents {a.doc_tokens} tokens; "
              f"answers of {a.answer_tokens} tokens", flush=True)
        history: list = []
        first = ask(ans, docs, QUESTIONS[0], history, a.answer_tokens)
        print(f"turn 1: documents read, TTFT {first['ttft_s']:.2f} s ({first['prefilled']} tokens prefilled)")
        history += [("user", QUESTIONS[0]), ("assistant", first["text"])]
        ratios = []
        for turn in range(2, a.turns + 1):
            q = QUESTIONS[(turn - 1) % len(QUESTIONS)]
            cont = ask(ans, docs, q, history, a.answer_tokens)   # continues the previous prompt's state
            ans._turn = None      # baseline: the history is prefilled again (and, the kept state gone, in place)
            base = ask(ans, docs, q, history, a.answer_tokens)
            if cont["text"] != base["text"]:
                sys.exit(f"turn {turn}: the continued answer differs from the re-read one")
            ratios.append(base["ttft_s"] / cont["ttft_s"])
            print(f"turn {turn}: history re-read {base['ttft_s'] * 1000:.1f} ms ({base['prefilled']} tokens "
                  f"prefilled) vs continued {cont['ttft_s'] * 1000:.1f} ms ({cont['prefilled']} tokens): "
                  f"{ratios[-1]:.2f}x", flush=True)
            history += [("user", q), ("assistant", cont["text"])]
        print(f"re-read / continued TTFT: {min(ratios):.2f}x-{max(ratios):.2f}x over turns 2-{a.turns}")


if __name__ == "__main__":
    main()
