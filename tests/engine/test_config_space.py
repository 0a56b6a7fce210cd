"""Property test over the config space transformers' JambaConfig accepts, against JambaForCausalLM.

Each seed draws a config (GQA ratio from 1 to H, attention period 1 (all attention) to past the last
layer (none), expert period 1..4, 1..8 experts with top-1..k, d_state 1..16, d_conv 1..5, expand 1..3,
dt_rank explicit or "auto", biases on/off, tied embeddings, rms_norm_eps 1e-6..1, any pad_token_id or
none, hidden sizes that heads do not divide, vocab sizes not a multiple of 8, a small context, 1-3
shards) and a prompt, and checks on our engine:

- fp32, within 1e-4 of transformers' fp32: one prefill (in random internal chunks), the same prompt
  prefilled over random cuts, token-by-token decode from a serialized state after a random prefix;
- bf16: ours is as close to transformers' fp32 as transformers' own bf16 forward (3x its error, at
  least 2e-2). bf16 configs route every token to all experts: with a real choice, a near-tie of two
  router probabilities flips the chosen experts under any change of rounding (seen: margin 0.002);
- the state: `to_bytes` / `from_bytes` continues exactly, `state_bytes(config)` is the real state's
  size, another model's state (blob or object) is refused;
- the context: no prefill, decode step or generation goes past max_position_embeddings;
- ExpertsInt8: top-1 agreement with the fp32 engine; generate with stop strings that span tokens.

The transformers reference runs its experts eagerly: its grouped_mm path fails on hidden sizes whose
rows are not 16-byte aligned ("strides should be multiple of 16 bytes"), a kernel limit, not Jamba's.
"""
from __future__ import annotations

import json
import random

import pytest
import torch

from engine import EngineError, StateError, load_engine, state_bytes
from engine.testing import write_tiny_checkpoint


def sample_config(r: random.Random, all_experts: bool = False) -> dict:
    heads = r.randint(1, 8)
    layers = r.randint(1, 6)
    attn_period, expert_period, experts = r.randint(1, layers + 1), r.randint(1, 4), r.randint(1, 8)
    attn_offset = r.choice([r.randrange(attn_period), attn_period - 1])   # period layers+1: no attention
    return dict(
        hidden_size=heads * r.randint(1, 10) + (r.randrange(heads) if r.random() < 0.4 else 0),
        num_attention_heads=heads,
        num_key_value_heads=r.choice([d for d in range(1, heads + 1) if heads % d == 0]),
        num_hidden_layers=layers, attn_layer_period=attn_period, attn_layer_offset=attn_offset,
        expert_layer_period=expert_period, expert_layer_offset=r.randrange(expert_period),
        num_experts=experts, num_experts_per_tok=experts if all_experts else r.randint(1, experts),
        intermediate_size=r.randint(1, 40), mamba_d_state=r.randint(1, 16), mamba_d_conv=r.randint(1, 5),
        mamba_expand=r.randint(1, 3), mamba_dt_rank=r.choice(["auto", r.randint(1, 9)]),
        mamba_conv_bias=r.random() < 0.5, mamba_proj_bias=r.random() < 0.5,
        tie_word_embeddings=r.random() < 0.3, rms_norm_eps=r.choice([1e-6, 1e-5, 1e-3, 0.1, 1.0]),
        vocab_size=r.randint(268, 700), max_position_embeddings=r.choice([48, 100, 16384]),
    )


FP32_SEEDS, BF16_SEEDS, INT8_SEEDS = range(24), range(100, 105), range(200, 206)


def test_the_seeds_cover_the_space():
    """Guard against seed lists that quietly stop covering what the test is for."""
    from engine.config import JambaConfig
    cfgs = [JambaConfig.from_dict(sample_config(random.Random(s))) for s in FP32_SEEDS]
    assert any(not c.attention_layers for c in cfgs) and any(not c.mamba_layers for c in cfgs)
    assert any(c.num_key_value_heads == 1 < c.num_attention_heads for c in cfgs)
    assert any(1 < c.num_key_value_heads < c.num_attention_heads for c in cfgs)
    assert any(c.hidden_size % c.num_attention_heads for c in cfgs)
    assert any(1 < c.num_experts_per_tok < c.num_experts and any(map(c.is_moe, range(c.num_hidden_layers)))
               for c in cfgs)
    assert any(c.tie_word_embeddings for c in cfgs) and any(c.vocab_size % 8 for c in cfgs)
    assert {c.mamba_d_conv for c in cfgs} == {1, 2, 3, 4, 5} and any(c.mamba_d_state == 1 for c in cfgs)
    assert any(c.max_position_embeddings < 64 for c in cfgs)


def _checkpoint(tmp_path, seed: int, all_experts: bool = False, longest: int = 60):
    r = random.Random(seed)
    cfg = sample_config(r, all_experts)
    path = write_tiny_checkpoint(tmp_path / "ckpt", seed=seed, shards=r.randint(1, 3), **cfg)
    pad = r.choice([None, 0, r.randrange(cfg["vocab_size"])])           # no part in the forward pass
    (path / "config.json").write_text(json.dumps({**json.loads((path / "config.json").read_text()),
                                                  "pad_token_id": pad}))
    n = r.randint(4, min(longest, cfg["max_position_embeddings"]))
    ids = torch.randint(0, cfg["vocab_size"], (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    return cfg, r, path, ids


def _reference(path, ids, dtype=torch.float32) -> torch.Tensor:
    from transformers import JambaForCausalLM
    model = JambaForCausalLM.from_pretrained(path, dtype=dtype, experts_implementation="eager").eval()
    with torch.no_grad():       # no cache: transformers' cache needs an attention layer to count tokens
        return model(torch.tensor([ids]), use_cache=False).logits[0].float()


def _cuts(r: random.Random, n: int) -> list[tuple[int, int]]:
    cuts = sorted(r.sample(range(1, n), min(3, n - 1)))
    return list(zip([0] + cuts, cuts + [n]))


@pytest.mark.parametrize("seed", FP32_SEEDS)
def test_fp32_matches_transformers(tmp_path, seed, tiny_engine):
    cfg, r, path, ids = _checkpoint(tmp_path, seed)
    n, expected = len(ids), _reference(path, ids)
    assert expected.abs().max() > 0.05, cfg
    eng = load_engine(path, device="cpu", dtype="float32", chunk_size=r.randint(1, 40))

    def close(actual, wanted):
        torch.testing.assert_close(actual, wanted, atol=1e-4, rtol=0, msg=lambda m: f"{cfg}\n{m}")

    logits, _ = eng.prefill(ids)
    close(logits, expected)
    state, parts = None, []
    for a, b in _cuts(r, n):
        part, state = eng.prefill(ids[a:b], state)
        parts.append(part)
    close(torch.cat(parts), expected)

    k = r.randrange(n)                  # decode token by token from a state after k tokens (0: empty)
    _, state = eng.prefill(ids[:k], logits="none")
    assert state.nbytes == state_bytes(eng.config, k, torch.float32)
    blob = state.to_bytes()
    with pytest.raises(StateError, match="another model"):
        tiny_engine.state_from_bytes(blob)
    with pytest.raises(StateError, match="another model"):
        tiny_engine.prefill([5], state)
    state = eng.state_from_bytes(blob)
    for j in range(k, n):
        step, state = eng.decode_step(ids[j], state)
        close(step[0], expected[j])

    context = cfg["max_position_embeddings"]
    if context < 200:           # the context holds: prefill, decode and generate all stop at it
        _, full = eng.prefill(ids + [7] * (context - n), logits="none")
        with pytest.raises(EngineError, match="context"):
            eng.decode_step(7, full)
        with pytest.raises(EngineError, match="context"):
            eng.prefill([7], full)
        gen = eng.generate(ids, max_new_tokens=context)
        list(gen)
        assert len(ids) + len(gen.token_ids) <= context and gen.state.n_tokens <= context
        assert gen.finish_reason in ("eos", "length")


@pytest.mark.parametrize("seed", BF16_SEEDS)
def test_bf16_as_close_to_fp32_as_transformers_bf16(tmp_path, seed):
    cfg, r, path, ids = _checkpoint(tmp_path, seed, all_experts=True, longest=24)   # bf16 on CPU: slow ops
    exact, theirs = _reference(path, ids), _reference(path, ids, torch.bfloat16)
    tol = max(3 * (theirs - exact).abs().max().item(), 2e-2)
    eng = load_engine(path, device="cpu", dtype="bfloat16", chunk_size=r.randint(1, 40))

    def close(actual, wanted):
        err = (actual.float() - wanted).abs().max().item()
        assert err <= tol, f"{cfg}\nerror {err:.3g} > {tol:.3g}"

    logits, _ = eng.prefill(ids)
    close(logits, exact)
    state, parts = None, []
    for a, b in _cuts(r, len(ids)):
        part, state = eng.prefill(ids[a:b], state)
        parts.append(part)
    close(torch.cat(parts), exact)
    _, state = eng.prefill(ids[:-2], logits="none")
    assert state.nbytes == state_bytes(eng.config, len(ids) - 2, torch.bfloat16)
    state = eng.state_from_bytes(state.to_bytes())
    for j in range(len(ids) - 2, len(ids)):
        step, state = eng.decode_step(ids[j], state)
        close(step[0], exact[j])


@pytest.mark.parametrize("seed", INT8_SEEDS)
def test_int8_top1_and_stop_strings_that_span_tokens(tmp_path, seed):
    cfg, r, path, ids = _checkpoint(tmp_path, seed)
    eng = load_engine(path, device="cpu", dtype="float32")
    q8 = load_engine(path, device="cpu", dtype="float32", quantize="int8")
    full, quant = eng.prefill(ids)[0], q8.prefill(ids)[0]
    assert (full.argmax(-1) == quant.argmax(-1)).float().mean() >= 0.9, cfg

    prompt = ids[:min(8, len(ids))]
    budget = min(24, cfg["max_position_embeddings"] - len(prompt))
    plain = eng.generate(prompt, max_new_tokens=budget, temperature=1.0, seed=seed)
    pieces = list(plain)
    text = "".join(pieces)
    bounds = [sum(map(len, pieces[:i])) for i in range(1, len(pieces))]
    bounds = [b for b in bounds if 0 < b < len(text)]
    if not bounds:
        pytest.skip(f"seed {seed}: the answer has no boundary between two pieces of text")
    b = r.choice(bounds)
    stop = text[max(0, b - r.randint(1, 3)):b + r.randint(1, 3)]        # spans the pieces at b
    gen = eng.generate(prompt, max_new_tokens=budget, temperature=1.0, seed=seed, stop=["\x00never", stop])
    got = "".join(gen)
    assert got == gen.text == text[:text.find(stop)] and gen.finish_reason == "stop", (stop, text)
