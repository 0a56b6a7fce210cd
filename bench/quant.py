"""ExpertsInt8 bench: int8 expert / MLP weights against the fp32 engine on the same tiny checkpoint.

    .venv/bin/python bench/quant.py [--positions 512] [--prefill 2048] [--decode-tokens 64] [--threads 2] [--rounds 3]

Checkpoint: bench/engine.py's (hidden 256, intermediate 1024, 8 layers with 1 attention layer,
4 experts top-2, vocab 4096), fp32. Prints the bytes of the expert + MLP weights before and after,
max / mean logit difference and top-1 agreement over `positions` positions, prefill and decode
tokens/s of both engines, and a matmul micro-bench of one expert projection: fp32, int8 weights
converted per call (what the engine does, `int8_linear`), torch's weight-only int8 GEMV
(_weight_int8pack_mm), and torch._int_mm with int8 activations (W8A8; not used, since it would
quantize the activations too). Timings are best-of-N wall times; on a loaded machine prefer
--threads 1 (OpenMP regions stall when the other core is busy).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.testing import BENCH_CONFIG  # noqa: E402  (after the sys.path line)


def _best(fn, repeat: int = 3) -> float:
    """Best wall time of `repeat` runs (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _speeds(eng, ids: list[int], decode_tokens: int) -> tuple[float, float]:
    eng.prefill(ids[:64], logits="last")                                          # warm-up
    t_prefill = _best(lambda: eng.prefill(ids, logits="last"), 2)
    logits, state = eng.prefill(ids[:256], logits="last")

    def decode():
        st, tok = state, int(logits[-1].argmax())
        for _ in range(decode_tokens):
            out, st = eng.decode_step(tok, st)
            tok = int(out[-1].argmax())
    return len(ids) / t_prefill, decode_tokens / _best(decode, 2)


def _matmul_bench(D: int, I: int, T: int) -> dict[str, float]:
    """ms per call of x [T, D] @ W^T, W [I, D]."""
    import torch
    import torch.nn.functional as F
    from engine.quant import Int8Weight, int8_linear
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(T, D, generator=g), torch.randn(I, D, generator=g)
    iw = Int8Weight.quantize(w)
    qT = iw.q.T                                                                   # [D, I] view

    def w8a8():
        xs = x.abs().amax(1, keepdim=True).clamp_min(1e-12) / 127.0               # [T, 1] per-token scale
        xq = torch.round(x / xs).to(torch.int8)
        return torch._int_mm(xq, qT).float() * xs * iw.scale

    out = {"fp32": _best(lambda: F.linear(x, w), 20) * 1e3,
           "int8_linear (engine)": _best(lambda: int8_linear(x, iw), 20) * 1e3,
           "_weight_int8pack_mm": _best(lambda: torch._weight_int8pack_mm(x, iw.q, iw.scale), 20) * 1e3}
    try:
        out["_int_mm W8A8"] = _best(w8a8, 20) * 1e3
    except RuntimeError as e:                                                     # shape/platform limits
        print(f"  torch._int_mm unavailable here: {e}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--positions", type=int, default=512)
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from engine import load_engine
    from engine.quant import ffn_weight_bytes
    from engine.testing import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = write_tiny_checkpoint(Path(tmp) / "bench-jamba", seed=0, **BENCH_CONFIG)
        full = load_engine(path, device="cpu", dtype="float32")
        q8 = load_engine(path, device="cpu", dtype="float32", quantize="int8")

    before, after = ffn_weight_bytes(full.weights), ffn_weight_bytes(q8.weights)
    print(f"checkpoint: {BENCH_CONFIG}, fp32, {args.threads} threads, torch {torch.__version__}")
    print(f"expert + MLP weights: {before / 2**20:.2f} MiB fp32 -> {after / 2**20:.2f} MiB int8 "
          f"(x{after / before:.3f}, saved {(before - after) / 2**20:.2f} MiB)")

    ids = torch.randint(3, BENCH_CONFIG["vocab_size"], (max(args.positions, args.prefill),),
                        generator=torch.Generator().manual_seed(1)).tolist()
    ref, _ = full.prefill(ids[:args.positions])
    got, _ = q8.prefill(ids[:args.positions])
    diff = (got - ref).abs()
    top1 = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    print(f"logits over {args.positions} positions: max |diff| {diff.max():.4f} (max |logit| {ref.abs().max():.2f}), "
          f"mean |diff| {diff.mean():.5f}, top-1 agreement {top1 * 100:.1f}%")

    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):                          # alternate the engines: load changes under us
        for name, eng in (("fp32", full), ("int8", q8)):
            p, d = _speeds(eng, ids[:args.prefill], args.decode_tokens)
            bp, bd = best.get(name, (0.0, 0.0))
            best[name] = (max(bp, p), max(bd, d))
    for name, (p, d) in best.items():
        print(f"{name}: prefill {p:,.0f} tok/s at {args.prefill} tokens, decode {d:,.1f} tok/s "
              f"(best of {args.rounds} alternating rounds)")

    D, I = BENCH_CONFIG["hidden_size"], BENCH_CONFIG["intermediate_size"]
    for T in (1, 512):
        ms = _matmul_bench(D, I, T)
        print(f"expert projection [{T}x{D}] @ [{D}x{I}]: " + ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items()))


if __name__ == "__main__":
    main()
