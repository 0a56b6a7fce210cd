"""Decode attention bench: one query over L keys on a thread team (the baseline) and on one thread.

    .venv/bin/python bench/attention.py [--threads 2] [--lengths 512 4096 8192 16384 65536]

Shapes of the bench model's attention layer (8 query heads, 2 K/V heads, head dim 32), fp32; runs
`engine.attention.attend` with T=1 (`engine.threads.one_thread` on or off), interleaved, best of 5
rounds of 20 calls. Prints ms per call and one thread's speed relative to the team; the engine picks
one thread while K has at most `ONE_THREAD_DECODE_KV` elements.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine import attention  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lengths", type=int, nargs="*", default=[512, 4096, 8192, 16384, 65536])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    engine_threads = attention.one_thread
    print(f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; H 8, G 2, Hd 32, fp32\n")
    print("| keys | team ms (baseline) | one thread ms | one thread vs team | engine uses |\n|---:|---:|---:|---:|---|")
    for L in args.lengths:
        q, k, v = torch.randn(8, 1, 32), torch.randn(2, L, 32), torch.randn(2, L, 32)
        best = {"team": float("inf"), "one": float("inf")}
        for _ in range(5):
            for mode in best:
                attention.one_thread = (lambda enabled=True: contextlib.nullcontext()) if mode == "team" \
                    else (lambda enabled=True: engine_threads(True))
                t0 = time.perf_counter()
                for _ in range(20):
                    attention.attend(q, k, v, L - 1)
                best[mode] = min(best[mode], (time.perf_counter() - t0) / 20 * 1e3)
        attention.one_thread = engine_threads
        uses = "one thread" if k.numel() <= attention.ONE_THREAD_DECODE_KV else "team"
        print(f"| {L} | {best['team']:.3f} | {best['one']:.3f} | {best['team'] / best['one']:.2f}x | {uses} |")


if __name__ == "__main__":
    main()
