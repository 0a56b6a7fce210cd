"""GPU-path math, run on CPU: the initial-state correction for selective_scan_fn, the conv window
continuation, the fused-kernel wrappers (fed with reference kernels of the same signatures), and 4-D SDPA."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import cpu_kernels, kernels
from engine.attention import attend, attend_masked
from engine.mamba import causal_conv, ssm_scan, ssm_step


def _scan_inputs(T: int, E: int = 24, N: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)                       # noqa: E731
    x, z = r(T, E), r(T, E)
    dt = F.softplus(r(T, E) - 1.0)                                    # [T, E] > 0, as after softplus(dt + bias)
    A = -torch.exp(r(E, N) * 0.5)                                     # [E, N] < 0
    B, C, D = r(T, N), r(T, N), r(E)
    h0 = r(E, N) * 3.0
    return x, dt, A, B, C, D, z, h0


@pytest.mark.parametrize("T,block", [(1, None), (7, None), (300, None), (300, 24 * 8 * 13)])
def test_initial_state_correction_equals_scan_from_h0(T, block, monkeypatch):
    """The CPU scan started from 0 stands in for selective_scan_fn; corrected, it must equal the scan from h0."""
    if block is not None:                                             # exercise the blocked path (13 rows a block)
        monkeypatch.setattr(kernels, "_CORRECTION_BLOCK_ELEMS", block)
    x, dt, A, B, C, D, z, h0 = _scan_inputs(T)
    y0, hz = ssm_scan(x, dt, A, B, C, D, z, torch.zeros_like(h0))
    y, h = kernels.add_initial_state(y0, hz, dt, A, C, z, h0)
    y_ref, h_ref = ssm_scan(x, dt, A, B, C, D, z, h0)
    assert (y0 - y_ref).abs().max() > 1e-2                            # h0 matters: the correction is doing work
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


def test_window_conv_continues_across_chunks():
    """A zero-padded conv (what causal_conv1d_fn computes) continued through windows equals one long pass."""
    g = torch.Generator().manual_seed(1)
    T, E, K = 23, 16, 4
    x, w, b = torch.randn(T, E, generator=g), torch.randn(E, K, generator=g), torch.randn(E, generator=g)

    def zero_padded(xp):                                              # [L, E] -> [L, E], like causal_conv1d_fn
        return F.conv1d(xp.T.unsqueeze(0), w.unsqueeze(1), b, padding=K - 1, groups=E)[0, :, :xp.shape[0]].T

    y_ref, win_ref = causal_conv(x, w, b, torch.zeros(K - 1, E))
    ys, window = [], torch.zeros(K - 1, E)
    for a, e in [(0, 5), (5, 6), (6, 8), (8, 23)]:                    # chunks shorter and longer than K-1
        y, window = kernels.window_conv(zero_padded, x[a:e], window)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys), y_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(window, win_ref)


def _reference_kernels() -> kernels.KernelSet:
    """Fused wrappers fed with transformers' torch fallbacks, which follow the kernels' signatures and
    layouts ((b, E, L), zero initial state, in-place state updates)."""
    from transformers.models.jamba import modeling_jamba as mj
    return kernels.fused_kernels(selective_scan_fn=mj.mamba_selective_scan,
                                 selective_state_update=mj.mamba_selective_state_update,
                                 causal_conv1d_fn=mj.causal_conv1d_fn, causal_conv1d_update=mj.causal_conv1d_update,
                                 label="reference")


def test_fused_wrappers_match_torch_ops():
    ks = _reference_kernels()
    assert ks.names == {"conv": "reference", "scan": "reference", "step": "reference", "attention": "sdpa"}
    x, dt, A, B, C, D, z, h0 = _scan_inputs(40, seed=2)
    y, h = ks.scan(x, dt, A, B, C, D, z, h0)
    y_ref, h_ref = ssm_scan(x, dt, A, B, C, D, z, h0)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    h0_before = h0.clone()
    y, h = ks.step(x[:1], dt[:1], A, B[:1], C[:1], D, z[:1], h0)
    y_ref, h_ref = ssm_step(x[:1], dt[:1], A, B[:1], C[:1], D, z[:1], h0)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(h0, h0_before)                                 # the in-place kernel worked on a copy

    g = torch.Generator().manual_seed(3)
    E, K = x.shape[1], 4
    w, b, window = torch.randn(E, K, generator=g), torch.randn(E, generator=g), torch.randn(K - 1, E, generator=g)
    window_before = window.clone()
    for T in (1, 2, 9):                                               # decode (conv update) and prefill
        y, win = ks.conv(x[:T], w, b, window)
        y_ref, win_ref = causal_conv(x[:T], w, b, window)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(win, win_ref)
    assert torch.equal(window, window_before)


@pytest.mark.parametrize("T,past", [(7, 0), (7, 5), (1, 9), (3, 40)])
def test_masked_attention_call_matches_attend(T, past):
    """The one-call masked form that CUDA runs for a continuation equals the CPU path's split form."""
    g = torch.Generator().manual_seed(4)
    H, G, Hd = 4, 2, 16
    q = torch.randn(H, T, Hd, generator=g)
    k, v = torch.randn(G, past + T, Hd, generator=g), torch.randn(G, past + T, Hd, generator=g)
    torch.testing.assert_close(attend_masked(q, k, v, past), attend(q, k, v, past), atol=1e-5, rtol=1e-5)


def test_cpu_selects_torch_path_and_no_kernels_import_here():
    ks = kernels.select("cpu")
    assert ks.names == {"conv": "torch", "scan": "torch", "step": "torch", "attention": "sdpa"}
    assert ks.scan is ssm_scan and ks.attend is attend
    if not kernels.installed_kernels():                               # this machine: no CUDA builds
        cuda = kernels._choose("cuda")                                # what a GPU without mamba-ssm would run
        assert cuda.names == {"conv": "torch", "scan": "torch", "step": "torch", "attention": "sdpa"}
        assert cuda.attend is attend                                  # the same attention code as on CPU


def test_env_forces_torch_path_on_cuda(monkeypatch):
    monkeypatch.setenv("JAMBADOCS_KERNELS", "torch")
    assert kernels._choose("cuda").names == {"conv": "torch", "scan": "torch", "step": "torch", "attention": "sdpa"}


def test_engine_continuation_through_fused_wrappers(tiny_engine):
    """Chunked prefill + decode with the wrapped kernels gives the one-pass torch logits (1e-4, fp32)."""
    eng = tiny_engine
    c = cpu_kernels.active()
    attention, scan = ("C", "C") if c else ("sdpa", "torch")
    assert {k: v for k, v in eng.kernels.items() if k != "gemv"} == {"conv": "torch", "scan": scan, "step": scan, "attention": attention}
    ids = torch.randint(0, eng.config.vocab_size, (70,), generator=torch.Generator().manual_seed(5)).tolist()
    ref, _ = eng.prefill(ids)                                         # torch path, one pass
    with kernels.override(_reference_kernels()):
        a, st = eng.prefill(ids[:33])
        b, st = eng.prefill(ids[33:67], state=st)
        steps = []
        for t in ids[67:]:
            out, st = eng.decode_step(t, st)
            steps.append(out)
    got = torch.cat([a, b, *steps])
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_step_passes_a_bias_tensor_and_conv_update_copies_the_window():
    """What the real kernels need beyond transformers' fallbacks: mamba-ssm's selective_state_update
    wrapper raises TypeError for dt_bias=None (`*(dt_bias.stride(0), ...) if dt_bias is not None else 0`
    in its Triton launch), and causal_conv1d_update writes conv_state in place, also for K = 2."""
    from transformers.models.jamba import modeling_jamba as mj

    def strict_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
        if dt_bias is None:
            raise TypeError("Value after * must be an iterable, not int")
        return mj.mamba_selective_state_update(state, x, dt, A, B, C, D, dt_bias, dt_softplus, z=z)

    ks = kernels.fused_kernels(selective_state_update=strict_update, causal_conv1d_fn=mj.causal_conv1d_fn,
                               causal_conv1d_update=mj.causal_conv1d_update, label="strict")
    x, dt, A, B, C, D, z, h0 = _scan_inputs(1, seed=6)
    y, h = ks.step(x, dt, A, B, C, D, z, h0)
    y_ref, h_ref = ssm_step(x, dt, A, B, C, D, z, h0)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    g = torch.Generator().manual_seed(7)
    for K in (2, 3, 4):
        E = x.shape[1]
        w, b, window = torch.randn(E, K, generator=g), torch.randn(E, generator=g), torch.randn(K - 1, E, generator=g)
        before = window.clone()
        y, win = ks.conv(x, w, b, window)
        y_ref, win_ref = causal_conv(x, w, b, before.clone())
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(win, win_ref)
        assert torch.equal(window, before), K                          # the saved state is never written


def test_scan_kernel_without_its_cuda_extension_is_not_picked(monkeypatch):
    """mamba-ssm main imports selective_scan_fn without selective_scan_cuda (not built by default any
    more) and fails only when called: the torch scan must be kept then."""
    import sys
    import types
    ssi = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    ssi.selective_scan_cuda, ssi.selective_scan_fn = None, lambda *a, **k: None
    ops = types.ModuleType("mamba_ssm.ops")
    ops.selective_scan_interface = ssi
    for name, mod in {"mamba_ssm": types.ModuleType("mamba_ssm"), "mamba_ssm.ops": ops,
                      "mamba_ssm.ops.selective_scan_interface": ssi}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    assert "selective_scan_fn" not in kernels.installed_kernels()
    ssi.selective_scan_cuda = object()                                # built: picked
    assert "selective_scan_fn" in kernels.installed_kernels()
