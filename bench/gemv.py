"""GEMV bench: one-row matmuls (decode) over the bench model's weight shapes, in both memory layouts.

    .venv/bin/python bench/gemv.py [--threads 2] [--mib 96]

For each shape [out, in] it streams `mib` MiB of distinct fp32 matrices (more than the caches, as
decode does) through `F.linear(x [1, in], W)` with W stored row-major (the checkpoint's layout:
the baseline) and column-major (a transposed view of an [in, out] buffer: what
`engine.checkpoint.gemv_layout` picks on CPU when out > in), and prints GB/s read and the ratio
column-major / row-major, plus the machine's memory read bandwidth (torch.sum over 256 MiB).
Also: prefill-sized matmuls ([1024, in] rows) in both layouts, to show the layout costs prefill nothing.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SHAPES = {  # name: [out, in] on the bench model (hidden 256, Mamba inner 512, intermediate 1024, vocab 4096)
    "in_proj": (1024, 256), "gate_up": (2048, 256), "lm_head": (4096, 256), "dt_proj": (512, 16),
    "down": (256, 1024), "out_proj": (256, 512), "qkv": (384, 256), "x_proj": (48, 512),
}


def best(fn, reps: int = 7) -> float:
    fn()
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mib", type=int, default=96)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    big = torch.randn(64 * 2**20)
    read = big.numel() * 4 / best(lambda: big.sum(), 5) / 1e9
    del big
    print(f"threads {args.threads}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; memory read bandwidth "
          f"(torch.sum over 256 MiB): {read:.1f} GB/s\n")
    print("| weight | [out, in] | row-major GB/s (baseline) | column-major GB/s | ratio | picked on CPU |")
    print("|---|---|---:|---:|---:|---|")
    with torch.inference_mode():
        for name, (o, i) in SHAPES.items():
            n = max(1, args.mib * 2**20 // (4 * o * i))
            rows = [torch.randn(o, i) for _ in range(n)]
            cols = [w.t().contiguous().t() for w in rows]                  # same values, [in, out] buffer
            x = torch.randn(1, i)
            nbytes = n * o * i * 4
            r = nbytes / best(lambda: [F.linear(x, w) for w in rows]) / 1e9
            c = nbytes / best(lambda: [F.linear(x, w) for w in cols]) / 1e9
            print(f"| {name} | [{o}, {i}] | {r:.1f} | {c:.1f} | {c / r:.2f}x | "
                  f"{'column-major' if o > i >= 64 else 'row-major'} |")
        print("\nprefill-sized: x [1024, in] @ W^T, ms per matmul (best of 7)\n")
        print("| weight | row-major ms (baseline) | column-major ms | ratio |\n|---|---:|---:|---:|")
        for name in ("in_proj", "gate_up", "down"):
            o, i = SHAPES[name]
            w = torch.randn(o, i)
            wc = w.t().contiguous().t()
            x = torch.randn(1024, i)
            r, c = best(lambda: F.linear(x, w)) * 1e3, best(lambda: F.linear(x, wc)) * 1e3
            print(f"| {name} | {r:.2f} | {c:.2f} | {r / c:.2f}x |")


if __name__ == "__main__":
    main()
