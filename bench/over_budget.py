"""Follow-ups on a document set larger than the context: the earlier page choice kept vs chosen afresh.

    python bench/over_budget.py [--context 16384] [--threads 1] [--repeats 2]

Tiny random checkpoint (bench/engine.py's shape, fp32) with a `--context`-token context and real
corpus documents many times that long. A first question (its pages chosen by BM25), then a follow-up in
the same chat, answered two ways on fresh data folders:

* **baseline, fresh choice**: the follow-up chooses its pages anew, as every question did before
  2026-11-28 (the store's earlier selection hidden from the answerer);
* **kept**: the answerer keeps the earlier pages when they match the follow-up nearly as well as a
  fresh choice (app/answerers/jamba.py, ingest/budget.py `prefer`), so their stored states serve it.

Prints each one's TTFT (wall and CPU), tokens from the cache and prefilled, how its pages were
chosen, and the ratio baseline / kept. Then a question on another topic, which chooses afresh.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cache import CORPUS, ask, answerer_for  # noqa: E402
from engine.testing import BENCH_CONFIG  # noqa: E402

DOCUMENTS = ["gnuplot.pdf", "r-intro.pdf"]
Q1 = "Which command sets the title of a plot?"
Q2 = "How do I set the title of a plot, and where does the title go?"
Q3 = "How do I read a data frame from a file with read.table?"


def how(result: dict) -> str:
    summary = result["omitted_summary"]
    return "kept from the earlier question" if "earlier question" in summary else (
        "chosen by BM25" if summary else "all fit")


def run(ckpt: Path, docs: list, keep: bool, work: Path) -> dict:
    a = answerer_for(ckpt, work)
    if not keep:                                   # the baseline: no earlier selection is ever found
        a.store.selection = lambda key: None
    first = ask(a, docs, Q1)
    follow = ask(a, docs, Q2, history=[("user", Q1), ("assistant", first["text"])])
    other = ask(a, docs, Q3, history=[("user", Q1), ("assistant", first["text"]), ("user", Q2),
                                      ("assistant", follow["text"])])
    return {"first": first, "follow": follow, "other": other}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each way; the fastest follow-up counts")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from engine import load_engine
    from engine.testing import write_tiny_checkpoint
    from ingest import read_document

    docs = [read_document(CORPUS / name) for name in DOCUMENTS]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_checkpoint(Path(tmp) / "ckpt", **dict(BENCH_CONFIG, max_position_embeddings=args.context))
        load_engine(ckpt)                          # compile the CPU kernels before any timing
        best: dict[bool, dict] = {}
        for r in range(args.repeats):              # the two ways alternate (the machine is shared)
            for keep in (False, True):
                res = run(ckpt, docs, keep, Path(tmp) / f"data-{keep}-{r}")
                if keep not in best or res["follow"]["ttft_s"] < best[keep]["follow"]["ttft_s"]:
                    best[keep] = res
    print(f"context {args.context} tokens, {args.threads} thread(s), documents {', '.join(DOCUMENTS)} "
          f"(pages chosen by BM25 when the set does not fit); fastest follow-up of {args.repeats} per way")
    print(f"{'':34} {'TTFT s':>8} {'CPU s':>8} {'cached':>8} {'prefilled':>9}  pages")
    for keep, label in ((False, "baseline (fresh choice)"), (True, "kept earlier choice")):
        for name in ("first", "follow", "other"):
            t = best[keep][name]
            print(f"{label + ' / ' + name:34} {t['ttft_s']:8.2f} {t['ttft_cpu_s']:8.2f} {t['cached_tokens']:8d} "
                  f"{t['prefilled_tokens']:9d}  {how(t)}")
    base, kept = best[False]["follow"], best[True]["follow"]
    print(f"follow-up TTFT, baseline / kept: {base['ttft_s'] / kept['ttft_s']:.1f}x wall, "
          f"{base['ttft_cpu_s'] / kept['ttft_cpu_s']:.1f}x CPU")


if __name__ == "__main__":
    main()
