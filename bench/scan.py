"""Scan bench: the engine's selective scan (`engine.mamba.ssm_scan`) on one prefill chunk, with the
recurrence and threading swapped for the alternatives that were measured against it.

    .venv/bin/python bench/scan.py [--tokens 1024] [--threads 2] [--repeats 7]

Variants (all run the engine's own `ssm_scan`; `linear_scan_` and `one_thread` are swapped in):
  per-token loop, team      the baseline: one Python step per token (what the issue rules out),
                            ops on a thread team
  two-level cumprod, team   the first two-level form (carries through torch.cumprod), thread team
  two-level, team           the engine's recurrence, thread team
  two-level, one thread     the engine as it is: the engine's recurrence, tile loop on one thread
  per-token loop, one thread
  C kernel                  the engine on fp32 CPU now: engine/csrc/scan.c (channels split between
                            the pool's threads, each walking the tokens in order)
The torch variants run with the C kernels off. Prints ms per chunk (best of `repeats`) and the
ratio to the baseline; every variant's output is checked against the baseline's (1e-4).
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
import torch.nn.functional as F  # noqa: E402

from engine import cpu_kernels, mamba  # noqa: E402


def cumprod_two_level_(a, u, h0):
    """The first two-level form: block-from-zero scan, decays by cumprod, one fused correction."""
    n = u.shape[0]
    m = max(2, int(n ** 0.5))
    nb = n // m
    if nb < 2:
        return mamba._sequential_scan_(a, u, h0)
    n0 = nb * m
    ub, ab = u[:n0].unflatten(0, (nb, m)), a[:n0].unflatten(0, (nb, m))
    for j in range(1, m):
        ub[:, j].addcmul_(ab[:, j], ub[:, j - 1])
    decay = torch.cumprod(ab, dim=1)
    carry = torch.empty_like(ub[:, 0])
    c = h0
    for i in range(nb):
        carry[i] = c
        c = torch.addcmul(ub[i, -1], decay[i, -1], c)
    ub.addcmul_(decay, carry.unsqueeze(1))
    return mamba._sequential_scan_(a[n0:], u[n0:], c) if n0 < n else c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    T, E, N = args.tokens, 512, 16                       # the bench model's Mamba layer (inner 512, state 16)
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(T, E, generator=g), torch.randn(T, E, generator=g)
    dt = F.softplus(torch.randn(T, E, generator=g) - 2)
    A = -torch.exp(torch.rand(E, N, generator=g) * 2.8)  # -1 .. -16, as Mamba's A_log init
    B, C = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    D, h0 = torch.randn(E, generator=g), torch.randn(E, N, generator=g)
    engine_scan, engine_threads = mamba.linear_scan_, mamba.one_thread
    team = lambda enabled=True: contextlib.nullcontext()           # noqa: E731  (leave the thread team on)
    variants = {
        "per-token loop, team": (mamba._sequential_scan_, team),
        "two-level cumprod, team": (cumprod_two_level_, team),
        "two-level, team": (engine_scan, team),
        "two-level, one thread": (engine_scan, engine_threads),
        "per-token loop, one thread": (mamba._sequential_scan_, engine_threads),
    }
    if cpu_kernels.enable(args.threads):
        variants["C kernel"] = (engine_scan, engine_threads)
    else:
        print("no C kernels here (no compiler): that variant skipped")
    times, outs = {k: float("inf") for k in variants}, {}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, (scan, threads) in variants.items():       # interleaved: drift hits all alike
                mamba.linear_scan_, mamba.one_thread = scan, threads
                cpu_kernels.enable(args.threads) if name == "C kernel" else cpu_kernels.disable()
                t0 = time.perf_counter()
                outs[name] = mamba.ssm_scan(x, dt, A, B, C, D, z, h0)
                times[name] = min(times[name], time.perf_counter() - t0)
    mamba.linear_scan_, mamba.one_thread = engine_scan, engine_threads
    base = "per-token loop, team"
    print(f"ssm_scan on T={T}, E={E}, N={N}, fp32; {args.threads} threads, OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}; best of {args.repeats}\n")
    print("| variant | ms per chunk | speed vs per-token loop, team |\n|---|---:|---:|")
    for name in variants:
        y, h = outs[name]
        assert torch.allclose(y, outs[base][0], atol=1e-4, rtol=1e-4) and torch.allclose(h, outs[base][1], atol=1e-4), name
        print(f"| {name} | {times[name] * 1e3:.1f} | {times[base] / times[name]:.2f}x |")


if __name__ == "__main__":
    main()
