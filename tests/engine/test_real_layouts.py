"""The published checkpoints' layouts (numbers from their config.json files: Jamba-v0.1, Jamba 1.5 / 1.7
Mini, Jamba2 Mini, Jamba 1.5 Large, Jamba Reasoning 3B / Jamba2 3B), read as transformers' JambaConfig
reads them, their KV sizes, and tiny checkpoints with the same layer layout (periods, offsets, experts,
top-k, GQA ratio, tied embeddings, biases, extra keys) against JambaForCausalLM within 1e-4 (fp32)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from engine import load_engine
from engine.config import JambaConfig
from engine.state_size import kv_bytes
from engine.testing import write_tiny_checkpoint

# Shared by Jamba-v0.1, Jamba 1.5 / 1.7 Mini and Jamba2 Mini (the last writes "dtype", not "torch_dtype").
MINI = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, attn_layer_period=8, attn_layer_offset=4, expert_layer_period=2,
            expert_layer_offset=1, num_experts=16, num_experts_per_tok=2, mamba_d_state=16, mamba_d_conv=4,
            mamba_expand=2, mamba_dt_rank=256, mamba_conv_bias=True, mamba_proj_bias=False,
            tie_word_embeddings=False, vocab_size=65536, rms_norm_eps=1e-6, max_position_embeddings=262144,
            eos_token_id=[2, 518], sliding_window=None, use_mamba_kernels=False, num_logits_to_keep=1,
            torch_dtype="bfloat16")
LARGE = dict(MINI, hidden_size=8192, intermediate_size=24576, num_hidden_layers=72, num_attention_heads=64,
             mamba_dt_rank=512)
SMALL = dict(hidden_size=2560, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=20,
             num_key_value_heads=1, attn_layer_period=14, attn_layer_offset=7, expert_layer_period=2,
             expert_layer_offset=1, num_experts=1, num_experts_per_tok=1, mamba_d_state=16, mamba_d_conv=4,
             mamba_expand=2, mamba_dt_rank=160, mamba_conv_bias=True, mamba_proj_bias=False,
             tie_word_embeddings=True, vocab_size=65536, rms_norm_eps=1e-6, max_position_embeddings=262144,
             eos_token_id=[2, 519], sliding_window=None, dtype="bfloat16")
V01_FIRST = dict(MINI, eos_token_id=2, n_ctx=262144, mamba_inner_layernorms=True,      # before "in-library"
                 calc_logits_for_entire_prompt=False, use_mamba_kernels=True)
del V01_FIRST["max_position_embeddings"]
LAYOUTS = {"mini": MINI, "large": LARGE, "3b": SMALL, "v0.1-first": V01_FIRST}
# KV bytes per token in bf16: 2 x attention layers x KV heads x head_dim x 2
KV_PER_TOKEN = {"mini": 16 << 10, "large": 36 << 10, "3b": 1 << 10, "v0.1-first": 16 << 10}
ATTENTION = {"mini": [4, 12, 20, 28], "large": list(range(4, 72, 8)), "3b": [7, 21], "v0.1-first": [4, 12, 20, 28]}


@pytest.mark.parametrize("name", LAYOUTS)
def test_real_config_reads_as_transformers_reads_it(name):
    from transformers import JambaConfig as HFConfig
    d = LAYOUTS[name]
    ours, theirs = JambaConfig.from_dict({"model_type": "jamba", **d}), HFConfig(**d)
    for f in dataclasses.fields(JambaConfig):
        if f.name not in ("extra", "head_dim"):
            assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
    assert ours.head_dim == theirs.hidden_size // theirs.num_attention_heads
    assert ours.layer_types == theirs.layers_block_type and ours.attention_layers == ATTENTION[name]
    assert [ours.num_experts if ours.is_moe(i) else 1 for i in range(ours.num_hidden_layers)] == theirs.layers_num_experts
    assert kv_bytes(ours, 1) == KV_PER_TOKEN[name]


_LAYOUT_KEYS = ("num_hidden_layers", "attn_layer_period", "attn_layer_offset", "expert_layer_period",
                "expert_layer_offset", "num_experts", "num_experts_per_tok", "mamba_d_state", "mamba_d_conv",
                "mamba_expand", "mamba_conv_bias", "mamba_proj_bias", "tie_word_embeddings", "rms_norm_eps")


@pytest.mark.parametrize("name", ["mini", "large", "3b"])
def test_tiny_model_with_a_real_layout_matches_transformers(tmp_path, name):
    from transformers import JambaForCausalLM
    real = LAYOUTS[name]
    heads = real["num_attention_heads"]
    hidden = 4 * heads                                   # head_dim 4, same GQA ratio as the real model
    path = write_tiny_checkpoint(tmp_path, seed=3, shards=2, hidden_size=hidden, num_attention_heads=heads,
                                 num_key_value_heads=real["num_key_value_heads"], intermediate_size=24,
                                 vocab_size=512, mamba_dt_rank=hidden // 16,
                                 **{k: real[k] for k in _LAYOUT_KEYS})
    cfg = json.loads((path / "config.json").read_text())
    extra = {k: v for k, v in real.items() if k not in cfg and k != "dtype"}   # the real file's other keys
    cfg.update(extra)
    if "dtype" in real:                                  # transformers >= 4.56 writes "dtype"
        cfg["dtype"] = cfg.pop("torch_dtype")
    (path / "config.json").write_text(json.dumps(cfg))
    ref = JambaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    eng = load_engine(path, device="cpu", dtype="float32")
    assert eng.config.attention_layers == [i for i in ATTENTION[name] if i < eng.config.num_hidden_layers]
    n = 40
    ids = torch.randint(0, 512, (n,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        expected = ref(torch.tensor([ids]), use_cache=False).logits[0]
    logits, _ = eng.prefill(ids)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    state, parts = None, []
    for a, b in ((0, 1), (1, 17), (17, 29), (29, n - 3)):
        part, state = eng.prefill(ids[a:b], state)
        parts.append(part)
    torch.testing.assert_close(torch.cat(parts), expected[:n - 3], atol=1e-4, rtol=0)
    for j in range(n - 3, n):
        step, state = eng.decode_step(ids[j], state)
        torch.testing.assert_close(step[0], expected[j], atol=1e-4, rtol=0)
