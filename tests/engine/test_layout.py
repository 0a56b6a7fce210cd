"""Decode-speed plumbing: weight layouts, fused matrices, grouped norms, one-thread sections."""
from __future__ import annotations

import threading

import torch

from engine import cpu_kernels, load_engine
from engine.checkpoint import gemv_layout
from engine.norm import rms_norm, rms_norm_groups
from engine.threads import one_thread
from engine.weights import AttentionWeights, MambaWeights, MoEWeights


def test_gemv_layout_keeps_values_and_picks_column_major_for_wide_matrices():
    wide, tall, narrow = torch.randn(256, 64), torch.randn(64, 256), torch.randn(512, 16)
    was_active = cpu_kernels.active()
    cpu_kernels.disable()                                                  # decode on torch's GEMV
    try:
        w2 = gemv_layout(wide)
        assert torch.equal(w2, wide) and w2.stride() == (1, 256)         # [in, out] buffer
        assert gemv_layout(tall) is tall                                  # out < in: left as it is
        assert gemv_layout(narrow) is narrow                              # in < 64: not worth it
    finally:
        if was_active:
            cpu_kernels.enable()
    if cpu_kernels.enable():                                               # the C GEMV reads row-major faster
        assert gemv_layout(wide) is wide
        assert gemv_layout(wide.bfloat16()).stride() == (1, 256)         # bf16 decodes on torch's GEMV


def test_loader_stores_fused_and_column_major_weights(tiny_checkpoint):
    eng = load_engine(tiny_checkpoint, device="cpu", dtype="float32")
    column_major = eng.kernels["gemv"] == "torch"                         # row-major for the C GEMV
    cfg = eng.config
    D, I, H, G, Hd = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    from safetensors import safe_open
    names = {}
    for f in sorted(tiny_checkpoint.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            names.update({k: h.get_tensor(k) for k in h.keys()})
    for i, layer in enumerate(eng.weights.layers):
        p = f"model.layers.{i}."
        if isinstance(layer.mixer, AttentionWeights):
            ref = torch.cat([names[p + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            assert torch.equal(layer.mixer.qkv, ref) and layer.mixer.qkv.shape == ((H + 2 * G) * Hd, D)
        else:
            m: MambaWeights = layer.mixer
            assert torch.equal(m.in_proj, names[p + "mamba.in_proj.weight"])
            assert (m.in_proj.stride(0) == 1) == column_major
            assert torch.equal(m.dbc_norm, torch.cat([names[p + f"mamba.{n}_layernorm.weight"] for n in ("dt", "b", "c")]))
        mlps = layer.ffn.experts if isinstance(layer.ffn, MoEWeights) else [layer.ffn]
        prefix = [p + f"feed_forward.experts.{e}." for e in range(len(mlps))] if isinstance(layer.ffn, MoEWeights) \
            else [p + "feed_forward."]
        for mlp, q in zip(mlps, prefix):
            ref = torch.cat([names[q + "gate_proj.weight"], names[q + "up_proj.weight"]])
            assert torch.equal(mlp.gate_up, ref) and mlp.gate_up.shape == (2 * I, D)
            assert (mlp.gate_up.stride(0) == 1) == column_major            # 2I > D: column-major on torch


def test_grouped_rms_norm_equals_one_norm_per_group():
    g = torch.Generator().manual_seed(0)
    sizes = (5, 3, 3)
    x, w = torch.randn(7, 11, generator=g) * 3, torch.randn(11, generator=g)
    parts = torch.split(x, sizes, dim=1)
    ws = torch.split(w, sizes)
    ref = torch.cat([rms_norm(p, wi, 1e-6) for p, wi in zip(parts, ws)], dim=1)
    torch.testing.assert_close(rms_norm_groups(x, w, sizes, 1e-6), ref, atol=1e-6, rtol=1e-5)
    xb, wb = x.bfloat16(), w.bfloat16()
    refb = torch.cat([rms_norm(p, wi, 1e-6) for p, wi in zip(torch.split(xb, sizes, 1), torch.split(wb, sizes))], 1)
    out = rms_norm_groups(xb, wb, sizes, 1e-6)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, refb, atol=2e-2, rtol=1e-2)
    tiny = torch.zeros(1, 11)                                              # eps keeps an all-zero group finite
    assert torch.isfinite(rms_norm_groups(tiny, w, sizes, 1e-6)).all()


def test_group_matrices_are_built_for_any_device():
    """Built on CPU, then moved: mixing devices while building would fail on a GPU ("meta" stands in)."""
    from engine.norm import _group_matrices
    mean, spread = _group_matrices((2, 3), torch.device("meta"))
    assert mean.device.type == spread.device.type == "meta" and mean.shape == (5, 2) and spread.shape == (2, 5)
    mean, spread = _group_matrices((2, 3), torch.device("cpu"))
    torch.testing.assert_close(torch.ones(1, 5) @ mean, torch.ones(1, 2))          # each column averages its group
    torch.testing.assert_close(torch.tensor([[1.0, 2.0]]) @ spread, torch.tensor([[1.0, 1, 2, 2, 2]]))


def test_one_thread_restores_the_thread_count_under_concurrency():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
            with one_thread():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        start, errors = threading.Barrier(4), []

        def worker():
            try:
                start.wait()
                for _ in range(200):
                    with one_thread():
                        assert torch.get_num_threads() == 1
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(e)
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert torch.get_num_threads() == 2                                # the last one out restored it
        with one_thread(enabled=False):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
