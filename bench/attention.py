"""Attention bench, shapes of the bench model's attention layer (8 query heads, 2 K/V heads, head
dim 32), fp32, both parts interleaved, best of 5 rounds:

    .venv/bin/python bench/attention.py [--threads 2] [--lengths 512 4096 8192 16384 65536]
                                        [--prefill-lengths 2048 8192 32768] [--question 60 65536]
                                        [--engine-decode 512 8192 32768 65000]

Decode: one query per head over L keys (`engine.attention.attend` with T=1, 20 calls a round) on
torch's SDPA as the engine ran it before 2026-11-28 (the baseline: one thread while K has at most
`ONE_THREAD_DECODE_KV` elements, else the team) and on the C kernel (`cpu_kernels.decode_attend`,
engine/csrc/decode_attention.c); the K/V bytes read per second by the C kernel. Then the bench
model's whole decode step after prompts of `--engine-decode` tokens, its attention on either.

Prefill: a chunk of 1024 queries after L - 1024 keys, and a question of Q tokens after P keys (the
state cache's follow-up), on torch's CPU flash kernel (the baseline: the engine's torch path, past
keys and the causal diagonal merged by log-sum-exps) and on the C kernel (`engine.cpu_kernels.attend`,
engine/csrc/attention.c). Prints ms per call, GFLOP/s (causal: 4 Hd H T (past + T/2)) and the ratio.
"""
from __future__ import annotations

import argparse
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
    ap.add_argument("--engine-decode", type=int, nargs="*", default=[512, 8192, 32768, 65000],
                    help="contexts at which to time the bench model's whole decode step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decode(args)
    engine_decode(args)
    prefill(args)


def engine_decode(args) -> None:
    """The bench model's whole decode step (bench/engine.py's checkpoint) after a prompt of L
    tokens: attention on torch's SDPA (the baseline) and on the C kernel, alternating, best of 3."""
    if not args.engine_decode or not cpu_kernels.enable(args.threads):
        return
    import tempfile

    from engine import load_engine
    from engine.testing import BENCH_CONFIG, write_tiny_checkpoint
    kernel = cpu_kernels.decode_attend
    with tempfile.TemporaryDirectory() as tmp:
        eng = load_engine(write_tiny_checkpoint(tmp, **BENCH_CONFIG), device="cpu", dtype="float32")
        ids = torch.randint(3, BENCH_CONFIG["vocab_size"], (max(args.engine_decode),),
                            generator=torch.Generator().manual_seed(0)).tolist()
        print("\n| context | decode step, SDPA attention ms (baseline) | with the C kernel ms | C vs SDPA |")
        print("|---:|---:|---:|---:|")
        state, done = None, 0
        for L in sorted(args.engine_decode):
            _, state = eng.prefill(ids[done:L], state, logits="none")
            done = L
            best = {"torch": float("inf"), "C": float("inf")}
            for _ in range(3):
                for mode in best:
                    cpu_kernels.decode_attend = kernel if mode == "C" else (lambda *a: None)
                    s = state
                    for _ in range(3):
                        _, s = eng.decode_step(5, s)
                    t0 = time.perf_counter()
                    for _ in range(30):
                        _, s = eng.decode_step(5, s)
                    best[mode] = min(best[mode], (time.perf_counter() - t0) / 30 * 1e3)
            cpu_kernels.decode_attend = kernel
            print(f"| {L} | {best['torch']:.2f} | {best['C']:.2f} | {best['torch'] / best['C']:.2f}x |")


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
    if not cpu_kernels.enable(args.threads):
        print("\nno C kernels here (no compiler): decode part skipped")
        return
    kernel = cpu_kernels.decode_attend
    print(f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; H 8, G 2, Hd 32, fp32\n")
    print("| keys | torch SDPA ms (baseline) | C kernel ms | C vs torch | C reads K/V at |\n|---:|---:|---:|---:|---:|")
    for L in args.lengths:
        q, k, v = torch.randn(8, 1, 32), torch.randn(2, L, 32), torch.randn(2, L, 32)
        best = {"torch": float("inf"), "C": float("inf")}
        for _ in range(5):
            for mode in best:           # the torch path as the engine ran it (one thread up to ONE_THREAD_DECODE_KV)
                cpu_kernels.decode_attend = kernel if mode == "C" else (lambda *a: None)
                t0 = time.perf_counter()
                for _ in range(20):
                    attention.attend(q, k, v, L - 1)
                best[mode] = min(best[mode], (time.perf_counter() - t0) / 20 * 1e3)
        cpu_kernels.decode_attend = kernel
        gbs = 2 * k.numel() * 4 / (best["C"] / 1e3) / 1e9
        print(f"| {L} | {best['torch']:.3f} | {best['C']:.3f} | {best['torch'] / best['C']:.2f}x | {gbs:.1f} GB/s |")

if __name__ == "__main__":
    main()
