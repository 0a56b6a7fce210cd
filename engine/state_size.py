"""Print the hybrid-state size table: `python -m engine.state_size [--tokens 262144] [--dtype bfloat16]
[--config CHECKPOINT_FOLDER_OR_CONFIG_JSON]`.

Jamba-v0.1 / Jamba-1.5-Mini (32 layers, 1 attention layer in 8, 8 KV heads of 128), or the checkpoint
given with --config, against a Transformer of the same shape whose layers are all attention (same
GQA), computed from configs alone with `engine.state.state_bytes`.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .config import JambaConfig
from .state import state_bytes

JAMBA_MINI = JambaConfig(vocab_size=65536, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, attn_layer_period=8, attn_layer_offset=4,
                         expert_layer_period=2, expert_layer_offset=1, num_experts=16, num_experts_per_tok=2,
                         mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, max_position_embeddings=262144)


def all_attention(cfg: JambaConfig) -> JambaConfig:
    """The same-size Transformer: every layer attention (period 1, offset 0)."""
    return dataclasses.replace(cfg, attn_layer_period=1, attn_layer_offset=0)


ALL_ATTENTION = all_attention(JAMBA_MINI)

GIB = 1 << 30


def kv_bytes(cfg: JambaConfig, n_tokens: int, dtype: str = "bfloat16") -> int:
    """K/V part only: 2 x attention layers x kv heads x head_dim x dtype bytes x tokens."""
    return state_bytes(cfg, n_tokens, dtype) - state_bytes(cfg, 0, dtype)


def table(tokens: list[int], dtype: str = "bfloat16", cfg: JambaConfig = JAMBA_MINI,
          name: str = "Jamba-1.5-Mini") -> str:
    dense = all_attention(cfg)
    rows = [f"| tokens | {name} KV | Mamba state | total | same-size Transformer KV |",
            "|---:|---:|---:|---:|---:|"]
    for n in tokens:
        rows.append(f"| {n:,} | {kv_bytes(cfg, n, dtype) / GIB:.2f} GiB "
                    f"| {state_bytes(cfg, 0, dtype) / 2**20:.1f} MiB "
                    f"| {state_bytes(cfg, n, dtype) / GIB:.2f} GiB "
                    f"| {kv_bytes(dense, n, dtype) / GIB:.2f} GiB |")
    return "\n".join(rows)


def load_config(path: str | Path) -> tuple[JambaConfig, str]:
    """(config, name) of a checkpoint folder or its config.json."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    return JambaConfig.from_file(file), (path if path.is_dir() else path.parent).name


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="*", default=[4096, 32768, 131072, 262144])
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--config", help="a checkpoint folder or its config.json (default: Jamba-1.5-Mini's shape)")
    a = ap.parse_args(argv)
    if a.config and not Path(a.config).exists():
        ap.error(f"--config {a.config}: no such checkpoint folder or config.json")
    cfg, name = load_config(a.config) if a.config else (JAMBA_MINI, "Jamba-1.5-Mini")
    dense = all_attention(cfg)
    print(f"Hybrid state size ({a.dtype}); KV per token: {name} {kv_bytes(cfg, 1, a.dtype) / 1024:g} KiB "
          f"({len(cfg.attention_layers)} attention layers of {cfg.num_hidden_layers}), "
          f"Transformer {kv_bytes(dense, 1, a.dtype) / 1024:g} KiB")
    print(table(a.tokens, a.dtype, cfg, name))


if __name__ == "__main__":
    main()
