"""The engine on a GPU, against the CPU engine on the same checkpoint: fused kernels picked when
installed, fp32 logits equal to the CPU's, continuation over chunk boundaries equal to one pass,
decode equal to prefill, the torch path on the GPU equal to the fused one, bf16 close to fp32, a
state saved on the GPU continued on the CPU, and greedy generation giving the CPU's tokens.

Skipped without CUDA (CI has none). On a GPU machine:

    bash scripts/test.sh tests/engine/test_device.py

`JAMBADOCS_TEST_DEVICE=cpu` runs the same checks with the CPU as the "device" (to check the tests
themselves on a machine without a GPU).
"""
from __future__ import annotations

import os

import pytest
import torch

from engine import kernels, load_engine
from engine.testing import write_tiny_checkpoint

DEVICE = os.environ.get("JAMBADOCS_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Wide enough for every fused kernel (channels a multiple of 8, conv width 4, power-of-2 state), two
# attention layers (one with GQA), MoE every other layer; 160-token chunks so prompts span several.
CONFIG = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=8, num_attention_heads=8,
              num_key_value_heads=2, attn_layer_period=4, attn_layer_offset=2, num_experts=4,
              num_experts_per_tok=2, mamba_d_state=16, vocab_size=1024, max_position_embeddings=8192)
FP32_TOL = 2e-3     # GPU vs CPU fp32: different reduction orders over 8 layers


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("device-jamba"), **CONFIG)


@pytest.fixture(scope="module")
def cpu(checkpoint):
    return load_engine(checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def dev(checkpoint):
    return load_engine(checkpoint, device=DEVICE, dtype="float32", chunk_size=160)


def _ids(n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, CONFIG["vocab_size"], (n,), generator=g).tolist()


def _close(got: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    torch.testing.assert_close(got.float().cpu(), expected.float().cpu(), atol=tol, rtol=0)


def test_engine_runs_on_the_device_with_the_kernels_it_found(dev):
    assert dev.device.type == torch.device(DEVICE).type and dev.weights.embed.device.type == dev.device.type
    found = kernels.installed_kernels() if dev.device.type == "cuda" else {}
    names = dev.kernels
    assert names["scan"] == ("mamba_ssm" if "selective_scan_fn" in found else "torch")
    assert names["step"] == ("mamba_ssm" if "selective_state_update" in found else "torch")
    assert names["conv"] == ("causal_conv1d" if "causal_conv1d_fn" in found else "torch")
    print(f"\nkernels on {DEVICE}: {names}")


def test_prefill_matches_the_cpu(dev, cpu):
    ids = _ids(500)
    expected, _ = cpu.prefill(ids)
    got, state = dev.prefill(ids)
    assert got.device.type == dev.device.type and state.n_tokens == 500
    _close(got, expected, FP32_TOL)


def test_continuation_over_chunk_boundaries_equals_one_pass(dev):
    ids = _ids(530, seed=1)
    one_pass, _ = dev.prefill(ids)
    state, parts = None, []
    for a, b in [(0, 1), (1, 97), (97, 160), (160, 161), (161, 400), (400, 530)]:   # 1 token, inside and across chunks
        part, state = dev.prefill(ids[a:b], state)
        parts.append(part)
    _close(torch.cat(parts), one_pass, 1e-4)


def test_decode_steps_equal_prefill(dev):
    ids = _ids(220, seed=2)
    expected, _ = dev.prefill(ids)
    _, state = dev.prefill(ids[:200], logits="none")
    for j in range(200, 220):
        step, state = dev.decode_step(ids[j], state)
        _close(step[0], expected[j], 1e-4)


def test_torch_path_on_the_device_equals_the_fused_kernels(dev):
    ids = _ids(300, seed=3)
    fused, state = dev.prefill(ids[:250])
    fused_steps = [dev.decode_step(t, state)[0] for t in ids[250:253]]
    with kernels.override(kernels.torch_kernels()):
        plain, state = dev.prefill(ids[:250])
        plain_steps = [dev.decode_step(t, state)[0] for t in ids[250:253]]
    _close(fused, plain, 1e-4)
    _close(torch.cat(fused_steps), torch.cat(plain_steps), 1e-4)


def test_bf16_is_close_to_fp32(checkpoint, dev):
    low = load_engine(checkpoint, device=DEVICE, dtype="bfloat16", chunk_size=160)
    ids = _ids(400, seed=4)
    ref, _ = dev.prefill(ids)
    got, state = low.prefill(ids)
    assert got.dtype == torch.float32 and next(iter(state.conv.values())).dtype == torch.bfloat16
    # bf16 rounding flips a near-tie expert choice now and then (transformers' own bf16 does too on
    # this random model), so a few positions move a lot: judge the whole prompt, not the worst token
    cos = torch.nn.functional.cosine_similarity(got.float(), ref.float(), dim=-1)      # [T]
    assert cos.mean() > 0.998 and (cos > 0.99).float().mean() > 0.95, cos
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.85


def test_state_saved_on_the_device_continues_on_the_cpu(dev, cpu):
    ids = _ids(300, seed=5)
    expected, _ = cpu.prefill(ids)
    _, state = dev.prefill(ids[:260], logits="none")
    moved = cpu.state_from_bytes(state.to_bytes())
    rest, _ = cpu.prefill(ids[260:], moved)
    _close(rest, expected[260:], FP32_TOL)


def test_greedy_generation_gives_the_cpu_tokens(dev, cpu):
    ids = _ids(120, seed=6)
    on_cpu = cpu.generate(ids, max_new_tokens=12)
    on_dev = dev.generate(ids, max_new_tokens=12)
    assert "".join(on_dev) == "".join(on_cpu)
    assert on_dev.token_ids == on_cpu.token_ids and len(on_dev.token_ids) > 0


def test_seeded_sampling_gives_the_cpu_tokens(dev, cpu):
    ids = _ids(120, seed=7)
    kw = dict(max_new_tokens=10, temperature=0.8, top_p=0.9, seed=123)
    on_cpu, on_dev = cpu.generate(ids, **kw), dev.generate(ids, **kw)
    assert "".join(on_dev) == "".join(on_cpu)
    assert on_dev.token_ids == on_cpu.token_ids


def test_experts_int8_on_the_device_matches_the_cpu(checkpoint):
    ids = _ids(200, seed=8)
    on_cpu = load_engine(checkpoint, device="cpu", dtype="float32", quantize="int8")
    on_dev = load_engine(checkpoint, device=DEVICE, dtype="float32", quantize="int8")
    expected, _ = on_cpu.prefill(ids)
    got, _ = on_dev.prefill(ids)
    _close(got, expected, FP32_TOL)
