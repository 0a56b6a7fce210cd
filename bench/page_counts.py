"""Counting page tokens (what a question on a set far over the context needs): which `tokenizers` path.

    python bench/page_counts.py [--pages 4000] [--repeats 2]

The corpus PDFs repeated to `--pages` pages (bench/over_budget.py's set), each page as the prompt
shows it (`ingest.budget.page_bodies`), counted in batches of `COUNT_PAGES_AT_ONCE` (as
`JambaAnswerer.count_pages` counts them) by:

* **encode_batch**: the fast backend's `encode_batch` (what `ingest.budget.tokenizer_counter` used);
* **encode_batch_fast**: `encode_batch_fast` (no character offsets);
* **encode, one by one**: `encode` per page, in Python.

with two tokenizers: the bench checkpoint's (byte-level BPE, 4,096 tokens, as GPT-2) and a
SentencePiece-style one (Metaspace, BPE with byte fallback, 32,768 tokens, as Llama's and Jamba's),
trained here on the same pages. The paths alternate; the fastest of `--repeats` counts. Prints wall
and CPU seconds (CPU: all the process's threads) and pages per second; all paths must agree.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def metaspace_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=[f"<0x{b:02X}>" for b in range(256)])
    tok.train_from_iterator(texts[:1000], trainer=trainer)
    return tok


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    from app.answerers.jamba import COUNT_PAGES_AT_ONCE
    from bench.over_budget import big_documents
    from engine.checkpoint import load_tokenizer
    from engine.testing import BENCH_CONFIG, write_tiny_checkpoint
    from ingest.budget import page_bodies

    bodies = [b for d in big_documents(args.pages) for b in page_bodies(d)]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_checkpoint(Path(tmp) / "ckpt", **BENCH_CONFIG)
        tokenizers = {"byte-level BPE 4K (bench checkpoint)": load_tokenizer(ckpt).backend_tokenizer,
                      "Metaspace BPE 32K, byte fallback": metaspace_tokenizer(bodies, 32768)}
    paths = {
        "encode_batch": lambda tok, xs: [len(e.ids) for e in tok.encode_batch(xs, add_special_tokens=False)],
        "encode_batch_fast": lambda tok, xs: [len(e.ids) for e in tok.encode_batch_fast(xs, add_special_tokens=False)],
        "encode, one by one": lambda tok, xs: [len(tok.encode(x, add_special_tokens=False).ids) for x in xs],
    }
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(args.repeats):
        for tname, tok in tokenizers.items():
            results = []
            for pname, count in paths.items():
                t0, c0 = time.perf_counter(), time.process_time()
                out = [n for i in range(0, len(bodies), COUNT_PAGES_AT_ONCE)
                       for n in count(tok, bodies[i: i + COUNT_PAGES_AT_ONCE])]
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                results.append(out)
                old = best.get((tname, pname))
                if old is None or wall < old[0]:
                    best[tname, pname] = (wall, cpu)
            assert all(r == results[0] for r in results), f"{tname}: the paths count differently"
    ended = time.strftime("%H:%M UTC", time.gmtime())
    print(f"{started} - {ended}: {len(bodies)} pages, {sum(map(len, bodies)):,} characters, batches of "
          f"{COUNT_PAGES_AT_ONCE}; fastest of {args.repeats}")
    for tname in tokenizers:
        base = best[tname, "encode_batch"][0]
        print(tname)
        for pname in paths:
            wall, cpu = best[tname, pname]
            print(f"  {pname:20} {wall:7.2f} s wall {cpu:7.2f} s CPU {len(bodies) / wall:8.0f} pages/s"
                  f"  encode_batch / this {base / wall:.2f}x")


if __name__ == "__main__":
    main()
