"""Stored states: writing and reading a state's bytes with the xxh3-128 checksum vs sha256.

    python bench/state_bytes.py [--tokens 65536] [--repeats 5]

A state of `--tokens` tokens in the bench model's shape (bench/engine.py: 1 attention layer with
2 KV heads of 32, 7 Mamba layers; fp32), K/V filled with random values (the bytes' content does
not matter here). Times, best of `--repeats`, each against the baseline measured in the same run:

* `to_bytes` (format 2: the checksum updated over the payload, one joining copy) vs the format 1
  construction it replaced (magic + payload concatenated, then the sha256 appended: two copies);
* `state_from_bytes` of a format 2 blob (xxh3-128, what the engine writes since 2026-11-28) vs the
  same state as a format 1 blob (sha256, what it wrote before);
* the store's own checksum of a blob on `put`: xxh3-128 vs sha256;
* the checksums alone over the blob.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def format1_bytes(state) -> bytes:
    """What `HybridState.to_bytes` did before 2026-11-28 (format 1), for the baseline."""
    import json

    from safetensors.torch import save

    tensors = {f"conv.{i}": t.contiguous() for i, t in state.conv.items()}
    tensors.update({f"ssm.{i}": t.contiguous() for i, t in state.ssm.items()})
    for i, r in state.kv.items():
        tensors[f"k.{i}"], tensors[f"v.{i}"] = r.k.contiguous(), r.v.contiguous()
    meta = {"jambadocs": json.dumps({"format": "hybrid-state", "version": 1, "fingerprint": state.fingerprint,
                                     "n_tokens": state.n_tokens, "offset": state.offset, "meta": state.meta},
                                    sort_keys=True)}
    body = b"JAMBADOCS-STATE\x01" + save(tensors, metadata=meta)
    return body + hashlib.sha256(body).digest()


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)

    import torch
    import xxhash

    from app.state_store import blob_checksum
    from engine.config import JambaConfig
    from engine.state import MAGIC, HybridState, KVRows, state_from_bytes
    from engine.testing import BENCH_CONFIG

    torch.set_num_threads(1)
    cfg = JambaConfig.from_dict(dict(BENCH_CONFIG, max_position_embeddings=max(a.tokens, 4096)))
    g = torch.Generator().manual_seed(0)
    state = HybridState.empty(cfg, torch.float32, fingerprint="bench")
    G, Hd = cfg.num_key_value_heads, cfg.head_dim
    kv = {i: KVRows.of(torch.randn(G, a.tokens, Hd, generator=g), torch.randn(G, a.tokens, Hd, generator=g))
          for i in cfg.attention_layers}
    state = HybridState(a.tokens, state.conv, state.ssm, kv, 0, "bench")
    new = state.to_bytes()
    old = format1_bytes(state)
    assert old[len(MAGIC):-32] == new[len(MAGIC):-16]
    mib = len(new) / 2**20
    print(f"state of {a.tokens} tokens: {mib:.1f} MiB; 1 thread; best of {a.repeats}")

    def load(blob):
        return lambda: state_from_bytes(blob, cfg, "bench", torch.float32)

    rows = [
        ("to_bytes", lambda: format1_bytes(state), state.to_bytes),
        ("state_from_bytes", load(old), load(new)),
        ("store checksum on put", lambda: hashlib.sha256(new).hexdigest(), lambda: blob_checksum(new)),
        ("checksum alone", lambda: hashlib.sha256(new).digest(), lambda: xxhash.xxh3_128_digest(new)),
    ]
    for name, before, after in rows:
        t_old, t_new = best(before, a.repeats), best(after, a.repeats)
        print(f"{name}: sha256 (before, baseline) {t_old * 1000:.1f} ms, xxh3-128 {t_new * 1000:.1f} ms: "
              f"{t_old / t_new:.2f}x")


if __name__ == "__main__":
    main()
