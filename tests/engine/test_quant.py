"""ExpertsInt8: per-channel int8 expert / MLP weights, checked on the tiny checkpoint against fp32."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import EngineError, load_engine
from engine.quant import Int8Weight, ffn_weight_bytes, int8_linear, quantize_weights
from engine.weights import MoEWeights


def test_int8_weight_per_channel_error_and_linear():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 32, generator=g) * torch.logspace(-3, 1, 48)[:, None]   # rows of very different scale
    w[5] = 0.0                                                                # an all-zero channel
    iw = Int8Weight.quantize(w)
    assert iw.q.dtype == torch.int8 and iw.scale.shape == (48,) and iw.shape == w.shape
    err = (iw.dequantize() - w).abs()
    assert torch.all(err <= iw.scale[:, None] / 2 + 1e-7)                      # round-to-nearest, per row
    assert torch.equal(iw.dequantize()[5], torch.zeros(32))
    x = torch.randn(7, 32, generator=g)
    torch.testing.assert_close(F.linear(x, iw), F.linear(x, iw.dequantize()), atol=1e-5, rtol=1e-5)
    xb = x.bfloat16()
    yb = int8_linear(xb, iw)
    assert yb.dtype == torch.bfloat16                                          # activations keep their dtype
    torch.testing.assert_close(yb.float(), F.linear(x, iw.dequantize()), atol=0.05, rtol=0.02)
    with pytest.raises(TypeError, match="only F.linear"):
        torch.matmul(x, iw)


@pytest.mark.parametrize("shape", [(1, 32), (2, 3, 32)])
def test_int8_linear_shapes_and_bias(shape):
    g = torch.Generator().manual_seed(2)
    iw = Int8Weight.quantize(torch.randn(40, 32, generator=g))
    x = torch.randn(*shape, generator=g)
    y = int8_linear(x, iw, bias=torch.ones(40))
    assert y.shape == (*shape[:-1], 40)
    torch.testing.assert_close(y, F.linear(x, iw.dequantize(), torch.ones(40)), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def engines(tiny_checkpoint):
    return (load_engine(tiny_checkpoint, device="cpu", dtype="float32"),
            load_engine(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8"))


def test_int8_engine_close_to_fp32_with_quarter_memory(engines):
    full, q8 = engines
    layers = q8.weights.layers
    assert any(isinstance(l.ffn, MoEWeights) for l in layers) and any(not isinstance(l.ffn, MoEWeights) for l in layers)
    for layer in layers:                                                       # experts and dense MLPs quantized
        mlps = layer.ffn.experts if isinstance(layer.ffn, MoEWeights) else [layer.ffn]
        assert all(isinstance(t, Int8Weight) for m in mlps for t in (m.gate_up, m.down))
    before, after = ffn_weight_bytes(full.weights), ffn_weight_bytes(q8.weights)
    assert 0.25 < after / before < 0.30                                        # int8 + one fp32 scale per row

    ids = torch.randint(3, full.config.vocab_size, (320,), generator=torch.Generator().manual_seed(1)).tolist()
    ref, _ = full.prefill(ids)
    got, _ = q8.prefill(ids)
    diff = (got - ref).abs().max().item()
    top1 = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert 0 < diff < 0.25 * ref.abs().max().item()                            # quantized, yet close
    assert top1 >= 0.95


def test_int8_engine_states_continue_and_are_its_own(engines):
    full, q8 = engines
    assert q8.fingerprint != full.fingerprint                                  # cached states are not shared
    ids = list(range(10, 60))
    one, _ = q8.prefill(ids)
    a, st = q8.prefill(ids[:21])
    b, _ = q8.prefill(ids[21:], state=st)
    torch.testing.assert_close(torch.cat([a, b]), one, atol=1e-4, rtol=1e-4)


def test_quantize_refuses_unknown_method(tiny_checkpoint, tiny_engine):
    with pytest.raises(EngineError, match="int4"):
        quantize_weights(tiny_engine.weights, "int4")
    with pytest.raises(EngineError, match="int4"):
        load_engine(tiny_checkpoint, device="cpu", quantize="int4")
