"""Our forward equals transformers' JambaForCausalLM (fp32, 1e-4) on several configs."""
from __future__ import annotations

import pytest
import torch

from engine import load_engine
from engine.testing import write_tiny_checkpoint

CONFIGS = {
    # MoE every 2nd layer, 1 attention layer, GQA 2:1
    "moe-1attn-gqa2": dict(),
    # dense, 2 of 4 layers attention, plain multi-head attention
    "dense-2attn-mha": dict(num_experts=1, attn_layer_period=2, attn_layer_offset=1, num_key_value_heads=4),
    # 6 layers, attention at 0 and 3, MoE top-1 of 3 at 0 and 3, MQA, biases, 3 shards, explicit dt rank
    "moe-top1-mqa-sharded": dict(num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=0,
                                 expert_layer_period=3, expert_layer_offset=0, num_experts=3,
                                 num_experts_per_tok=1, num_key_value_heads=1, mamba_proj_bias=True,
                                 mamba_conv_bias=False, mamba_d_conv=3, mamba_dt_rank=3, shards=3),
    # tied embeddings, 6 heads / 3 kv heads, last layer attention, small state
    "tied-5layers": dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=3, num_hidden_layers=5,
                         attn_layer_period=5, attn_layer_offset=4, mamba_d_state=4, tie_word_embeddings=True,
                         num_experts=4, num_experts_per_tok=3, seed=7),
    # Jamba Reasoning 3B's layout (its config.json: 28 layers, attention at 7 and 21 only, dense MLP,
    # 20 query heads on 1 kv head, tied embeddings, dt rank = hidden / 16), scaled down
    "reasoning-3b-layout": dict(hidden_size=40, num_attention_heads=5, num_key_value_heads=1, num_hidden_layers=28,
                                attn_layer_period=14, attn_layer_offset=7, num_experts=1, intermediate_size=64,
                                tie_word_embeddings=True, mamba_conv_bias=True, mamba_proj_bias=False, seed=3),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    from transformers import JambaForCausalLM
    path = write_tiny_checkpoint(tmp_path_factory.mktemp(request.param), **CONFIGS[request.param])
    ref = JambaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return load_engine(path, device="cpu", dtype="float32"), ref


def _ids(eng, n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, eng.config.vocab_size, (n,), generator=g).tolist()


def test_prefill_matches_transformers(pair):
    eng, ref = pair
    ids = _ids(eng, 70)
    with torch.no_grad():
        expected = ref(torch.tensor([ids])).logits[0]
    logits, state = eng.prefill(ids)
    assert logits.shape == expected.shape
    assert expected.abs().max() > 0.5                    # logits are O(1): a wrong op would show
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    assert state.n_tokens == len(ids)


def test_token_by_token_decode_matches_transformers(pair):
    eng, ref = pair
    ids = _ids(eng, 24, seed=1)
    with torch.no_grad():
        expected = ref(torch.tensor([ids])).logits[0]
    logits, state = eng.prefill(ids[:1])
    got = [logits]
    for t in ids[1:]:
        logits, state = eng.decode_step(t, state)
        got.append(logits)
    torch.testing.assert_close(torch.cat(got), expected, atol=1e-4, rtol=0)


def test_transformers_cached_decode_agrees(pair):
    """Also against transformers' own cache path: prefill 10 tokens, then one token at a time."""
    eng, ref = pair
    ids = _ids(eng, 16, seed=2)
    with torch.no_grad():
        out = ref(torch.tensor([ids[:10]]), use_cache=True)
        cache, steps = out.past_key_values, []
        for t in ids[10:]:
            out = ref(torch.tensor([[t]]), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits[0])
    _, state = eng.prefill(ids[:10], logits="none")
    mine = []
    for t in ids[10:]:
        logits, state = eng.decode_step(t, state)
        mine.append(logits)
    torch.testing.assert_close(torch.cat(mine), torch.cat(steps), atol=1e-4, rtol=0)


@pytest.mark.parametrize("block_tokens", [1, 3, 64])
def test_scan_tiles_match_a_plain_recurrence(monkeypatch, block_tokens):
    """ssm_scan's torch path in tiles of any size equals h_t = exp(dt A) h + dt B x, y = C.h + D x,
    gated (the C kernel, tests/engine/test_cpu_kernels.py, is kept out)."""
    import torch.nn.functional as F
    from engine import cpu_kernels, mamba
    monkeypatch.setattr(cpu_kernels, "scan", lambda *args: None)
    T, E, N = 20, 12, 5
    monkeypatch.setattr(mamba, "SCAN_BLOCK_ELEMS", block_tokens * E * N)
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(T, E, generator=g), torch.randn(T, E, generator=g)
    dt = F.softplus(torch.randn(T, E, generator=g))
    A = -torch.rand(E, N, generator=g) * 4
    B, C = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    D, h0 = torch.randn(E, generator=g), torch.randn(E, N, generator=g)
    h, ys = h0.clone(), []
    for t in range(T):
        h = torch.exp(dt[t, :, None] * A) * h + dt[t, :, None] * B[t] * x[t, :, None]
        ys.append((h @ C[t] + D * x[t]) * F.silu(z[t]))
    h0_before = h0.clone()
    y, h_end = mamba.ssm_scan(x, dt, A, B, C, D, z, h0)
    torch.testing.assert_close(y, torch.stack(ys), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_end, h, atol=1e-5, rtol=1e-5)
    assert torch.equal(h0, h0_before)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("T,past", [(7, 5), (16, 40), (3, 1)])
def test_continued_attention_equals_masked_softmax(T, past, dtype, tol):
    """The split (past keys + causal diagonal, merged by log-sum-exp) is the masked softmax attention."""
    from engine.attention import attend
    g = torch.Generator().manual_seed(T + past)
    H, G, Hd = 4, 2, 16
    q = torch.randn(H, T, Hd, generator=g)
    k, v = torch.randn(G, past + T, Hd, generator=g), torch.randn(G, past + T, Hd, generator=g)
    kk, vv = k.repeat_interleave(H // G, 0), v.repeat_interleave(H // G, 0)
    scores = (q @ kk.mT) * Hd ** -0.5                                   # [H, T, L]
    allowed = torch.arange(past + T)[None, :] <= torch.arange(past, past + T)[:, None]
    expected = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ vv
    got = attend(q.to(dtype), k.to(dtype), v.to(dtype), past)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), expected, atol=tol, rtol=tol)
