"""Seeded random Jamba configs (any layer layout, expert count, GQA ratio, state and conv sizes, biases,
tied embeddings, no attention layer at all) against transformers' JambaForCausalLM: one full prefill,
a prefill continued over random chunk boundaries, and decode steps, all within 1e-4 (fp32)."""
from __future__ import annotations

import random

import pytest
import torch

from engine import load_engine
from engine.testing import write_tiny_checkpoint

SEEDS = list(range(8))


def random_config(seed: int) -> dict:
    r = random.Random(seed)
    heads = r.choice([1, 2, 3, 4, 6, 8])
    kv_heads = r.choice([d for d in range(1, heads + 1) if heads % d == 0])
    layers = r.randint(1, 7)
    attn_period = r.randint(1, layers + 1)          # period > layers with offset >= layers: no attention layer
    expert_period = r.randint(1, 4)
    experts = r.choice([1, 2, 3, 4, 8])
    return dict(
        hidden_size=heads * r.choice([4, 8, 16]), num_attention_heads=heads, num_key_value_heads=kv_heads,
        num_hidden_layers=layers, attn_layer_period=attn_period, attn_layer_offset=r.randrange(attn_period),
        expert_layer_period=expert_period, expert_layer_offset=r.randrange(expert_period),
        num_experts=experts, num_experts_per_tok=r.randint(1, experts), intermediate_size=r.choice([8, 24, 96]),
        mamba_d_state=r.choice([1, 2, 16]), mamba_d_conv=r.choice([2, 3, 4]), mamba_expand=r.choice([1, 2, 3]),
        mamba_dt_rank=r.choice(["auto", 1, 5]), mamba_conv_bias=r.random() < 0.5,
        mamba_proj_bias=r.random() < 0.5, tie_word_embeddings=r.random() < 0.3,
        vocab_size=r.choice([300, 512, 777]),
    )


def test_the_seeds_cover_the_layouts_that_matter():
    """Guard against a seed list that quietly stops covering the interesting cases."""
    from engine.config import JambaConfig
    cfgs = [JambaConfig.from_dict(random_config(s)) for s in SEEDS]
    assert any(not c.attention_layers for c in cfgs)                       # pure Mamba
    assert any(len(c.attention_layers) > 1 for c in cfgs)
    assert any(c.num_experts > 1 for c in cfgs) and any(c.num_experts == 1 for c in cfgs)
    assert any(c.num_key_value_heads < c.num_attention_heads for c in cfgs)
    assert any(c.tie_word_embeddings for c in cfgs)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_config_matches_transformers(tmp_path, seed):
    from transformers import JambaForCausalLM
    cfg = random_config(seed)
    r = random.Random(1000 + seed)
    path = write_tiny_checkpoint(tmp_path, seed=seed, shards=r.choice([1, 2]), **cfg)
    ref = JambaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    eng = load_engine(path, device="cpu", dtype="float32")
    n = r.randint(8, 90)
    ids = torch.randint(0, cfg["vocab_size"], (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    with torch.no_grad():       # no cache: transformers' cache needs an attention layer to count tokens
        expected = ref(torch.tensor([ids]), use_cache=False).logits[0]
    assert expected.abs().max() > 0.05, cfg

    logits, _ = eng.prefill(ids)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0, msg=lambda m: f"{cfg}\n{m}")

    cuts = sorted(r.sample(range(1, n), 3))
    state, parts = None, []
    for a, b in zip([0] + cuts, cuts + [n]):
        part, state = eng.prefill(ids[a:b], state)
        parts.append(part)
    torch.testing.assert_close(torch.cat(parts), expected, atol=1e-4, rtol=0, msg=lambda m: f"{cfg}\n{m}")

    _, state = eng.prefill(ids[:-3], logits="none")
    state = eng.state_from_bytes(state.to_bytes())
    for j in range(n - 3, n):
        step, state = eng.decode_step(ids[j], state)
        torch.testing.assert_close(step[0], expected[j], atol=1e-4, rtol=0, msg=lambda m: f"{cfg}\n{m}")


# Odd sizes (no multiple of 4 or 8 anywhere: the C kernels' tail paths), long prompts (several
# prefill chunks and scan tiles), big and small states. On such configs two fp32 implementations can
# differ by more than 1e-4 (tiny hidden sizes amplify rounding), so both are held against float64:
# ours must be about as close to it as transformers' own fp32 forward (or within 1e-4).
ODD_CONFIGS = [
    dict(hidden_size=30, num_attention_heads=5, num_key_value_heads=1, num_hidden_layers=8, attn_layer_period=5,
         attn_layer_offset=4, expert_layer_period=3, expert_layer_offset=0, num_experts=3, num_experts_per_tok=2,
         intermediate_size=13, mamba_d_state=33, mamba_d_conv=2, mamba_expand=3, mamba_dt_rank=1,
         mamba_conv_bias=False, mamba_proj_bias=True, tie_word_embeddings=True, vocab_size=270),
    dict(hidden_size=6, num_attention_heads=2, num_key_value_heads=2, num_hidden_layers=5, attn_layer_period=2,
         attn_layer_offset=1, expert_layer_period=1, expert_layer_offset=0, num_experts=5, num_experts_per_tok=5,
         intermediate_size=7, mamba_d_state=1, mamba_d_conv=5, mamba_expand=1, mamba_dt_rank="auto",
         mamba_conv_bias=True, mamba_proj_bias=False, tie_word_embeddings=False, vocab_size=301),
]


@pytest.mark.parametrize("cfg", ODD_CONFIGS, ids=["hidden30-state33", "hidden6-conv5"])
def test_odd_sizes_and_long_prompts_against_float64(tmp_path, cfg):
    from transformers import JambaForCausalLM
    path = write_tiny_checkpoint(tmp_path, seed=7, **cfg)
    n = 1100
    ids = torch.randint(0, cfg["vocab_size"], (n,), generator=torch.Generator().manual_seed(7)).tolist()
    ref = {}
    for dtype in (torch.float32, torch.float64):    # eager experts: grouped_mm has no float64
        model = JambaForCausalLM.from_pretrained(path, dtype=dtype, experts_implementation="eager").eval()
        with torch.no_grad():
            ref[dtype] = model(torch.tensor([ids]), use_cache=False).logits[0].double()
    exact = ref[torch.float64]
    eng = load_engine(path, device="cpu", dtype="float32")
    state, parts = None, []
    for a, b in ((0, 1), (1, 700), (700, n)):        # continued prefills: a 1-token chunk, then long ones
        part, state = eng.prefill(ids[a:b], state)
        parts.append(part)
    ours = torch.cat(parts).double()
    theirs_err = (ref[torch.float32] - exact).abs().amax(-1)      # [n] per position
    ours_err = (ours - exact).abs().amax(-1)
    assert exact.abs().max() > 0.05
    # as close to float64 as transformers' fp32, within a factor 2 (which of two fp32 sums rounds
    # better at one position is chance): at the worst position and on average
    assert ours_err.max() <= max(1e-4, 2 * theirs_err.max()), (ours_err.max(), theirs_err.max())
    assert ours_err.mean() <= 2 * theirs_err.mean() + 1e-6, (ours_err.mean(), theirs_err.mean())
