"""Attention bench, shapes of the bench model's attention layer (8 query heads, 2 K/V heads, head
dim 32), fp32, both parts interleaved, best of 5 rounds:

    .venv/bin/python bench/attention.py [--threads 2] [--lengths 512 4096 8192 16384 65536]
                                        [--prefill-lengths 2048 8192 32768] [--question 60 65536]

Decode: one query over L keys on a thread team (the baseline) and on one thread (`engine.attention
.attend` with T=1, `engine.threads.one_thread` on or off; 20 calls a round). The engine picks one
thread while K has at most `ONE_THREAD_DECODE_KV` elements.

Prefill: a chunk of 1024 queries after L - 1024 keys, and a question of Q tokens after P keys (the
state cache's follow-up), on torch's CPU flash kernel (the baseline: the engine's torch path, past
keys and the causal diagonal merged by log-sum-exps) and on the C kernel (`engine.cpu_kernels.attend`,
engine/csrc/attention.c). Prints ms per call, GFLOP/s (causal: 4 Hd H T (past + T/2)) and the ratio.
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

from engine import attention, cpu_kernels  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lengths", type=int, nargs="*", default=[512, 4096, 8192, 16384, 65536])
    ap.add_argument("--prefill-lengths", type=int, nargs="*", default=[2048, 8192, 32768])
    ap.add_argument("--question", type=int, nargs=2, default=[60, 65536], metavar=("Q", "P"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decode(args)
    prefill(args)


def prefill(args) -> None:
    if not cpu_kernels.enable(args.threads):
        print("\nno C kernels here (no compiler): prefill part skipped")
        return
    print("\n| queries | past keys | torch flash ms (baseline) | GFLOP/s | C kernel ms | GFLOP/s | C vs torch |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    cases = [(1024, L - 1024) for L in args.prefill_lengths] + [tuple(args.question)]
    for T, past in cases:
        g = torch.Generator().manual_seed(T + past)
        q, k, v = torch.randn(8, T, 32, generator=g), torch.randn(2, past + T, 32, generator=g), \
            torch.randn(2, past + T, 32, generator=g)
        flops = 4 * 32 * 8 * T * (past + T / 2)
        best = {"torch": float("inf"), "C": float("inf")}
        for _ in range(5):
            for mode in best:
                if mode == "torch":
                    cpu_kernels.disable()
                else:
                    cpu_kernels.enable(args.threads)
                t0 = time.perf_counter()
                attention.attend(q, k, v, past)
                best[mode] = min(best[mode], time.perf_counter() - t0)
        cpu_kernels.enable(args.threads)
        print(f"| {T} | {past} | {best['torch'] * 1e3:.1f} | {flops / best['torch'] / 1e9:.1f} | "
              f"{best['C'] * 1e3:.1f} | {flops / best['C'] / 1e9:.1f} | {best['torch'] / best['C']:.2f}x |")


def decode(args) -> None:
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
