"""CPU kernels (engine/csrc/): the pooled GEMV, the fused Mamba step, MLP, MoE and RMSNorm
(decode.c), the causal attention of prefill (attention.c) and the selective scan of prefill
(scan.c), against the torch ops they replace and float64 references."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine import cpu_kernels, load_engine, mamba
from engine.attention import attend_masked
from engine.testing import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def kernels_on():
    if not cpu_kernels.enable(2):
        pytest.skip("no C compiler here: the CPU kernels cannot be built")
    yield


def _layouts(w: torch.Tensor):
    yield w                                              # row-major [N, K]
    yield w.t().contiguous().t()                         # column-major: a transposed [K, N] buffer


@pytest.mark.parametrize("N,K", [(1, 1), (3, 5), (33, 17), (48, 512), (200, 300), (2048, 256), (256, 1024), (4096, 256)])
def test_gemv_equals_f_linear_in_both_layouts_with_and_without_bias(N, K):
    g = torch.Generator().manual_seed(N * 1000 + K)
    w0, x, b = torch.randn(N, K, generator=g), torch.randn(1, K, generator=g), torch.randn(N, generator=g)
    for w in _layouts(w0):
        assert cpu_kernels._layout(w) is not None
        for bias in (None, b):
            got = cpu_kernels.linear(x, w, bias)
            torch.testing.assert_close(got, F.linear(x, w0, bias), atol=1e-4 * K ** 0.5, rtol=1e-5)


def test_linear_leaves_other_products_to_torch():
    w = torch.randn(64, 32)
    x2 = torch.randn(2, 32)                               # two rows: a prefill, not a GEMV
    assert torch.equal(cpu_kernels.linear(x2, w), F.linear(x2, w))
    xb, wb = torch.randn(1, 32, dtype=torch.bfloat16), w.bfloat16()
    assert cpu_kernels.linear(xb, wb).dtype == torch.bfloat16
    strided = torch.randn(64, 64)[:, ::2]                 # neither row- nor column-major
    assert cpu_kernels._layout(strided) is None
    torch.testing.assert_close(cpu_kernels.linear(torch.randn(1, 32), strided).shape, torch.Size([1, 64]))


def test_gemv_from_several_python_threads_at_once():
    """One product runs on the pool at a time; the others compute on their own thread, all correct."""
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(1024 + 32 * i, 256, generator=g) for i in range(4)]
    xs = [torch.randn(1, 256, generator=g) for _ in ws]
    refs = [F.linear(x, w) for x, w in zip(xs, ws)]
    assert _in_four_threads(lambda i: torch.allclose(cpu_kernels.linear(xs[i], ws[i]), refs[i], atol=1e-3, rtol=1e-5),
                            rounds=200) == []


def _in_four_threads(check, rounds: int) -> list[int]:
    """Runs check(i) `rounds` times in each of 4 Python threads at once; the i whose check failed."""
    errors = []

    def work(i):
        for _ in range(rounds):
            if not check(i):
                errors.append(i)
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_working_pool():
    w, x = torch.randn(2048, 256), torch.randn(1, 256)
    ref = F.linear(x, w)
    cpu_kernels.linear(x, w)                               # the parent's pool is running
    pid = os.fork()
    if pid == 0:                                          # child: its workers are gone; a new pool starts
        ok = all(torch.allclose(cpu_kernels.linear(x, w), ref, atol=1e-3) for _ in range(50))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# -- decode attention (decode_attention.c) ------------------------------------------------------------

@pytest.mark.parametrize("H,G,Hd", [(8, 2, 32), (32, 8, 128), (6, 3, 8), (4, 1, 40), (4, 4, 256), (3, 1, 16)])
@pytest.mark.parametrize("L", [1, 7, 64, 65, 2047, 2048, 2049, 5000])   # blocks of 64 keys, chunks of 2048
def test_decode_attention_kernel_equals_softmax_attention(H, G, Hd, L):
    g = torch.Generator().manual_seed(H * 31 + L + Hd)
    qkv = torch.randn(1, H + 2 * G, Hd, generator=g).transpose(0, 1)                  # q as the engine views it
    q = qkv[:H]
    buf = torch.randn(2, G, L + 9, Hd, generator=g) * 2                               # K/V rows of a reserved buffer
    k, v = buf[0, :, :L], buf[1, :, :L]
    got = cpu_kernels.decode_attend(q, k, v)
    assert got is not None and got.shape == (H, 1, Hd)
    torch.testing.assert_close(got, _attention_reference(q, k, v, L - 1), atol=2e-6, rtol=1e-5)


def test_decode_attention_kernel_with_peaked_scores_and_on_any_pool():
    """Nearly one-hot softmax whose max moves between chunks: as close to float64 as torch's SDPA;
    the result does not depend on the number of threads (chunks of fixed size, merged in order)."""
    g = torch.Generator().manual_seed(9)
    q, k, v = torch.randn(8, 1, 32, generator=g) * 20, torch.randn(2, 6000, 32, generator=g) * 3, \
        torch.randn(2, 6000, 32, generator=g)
    k[:, 4100] *= 4                                       # a key far ahead of the others, in the third chunk
    exact = _attention_reference(q, k, v, 5999)
    torch_error = (F.scaled_dot_product_attention(q.unsqueeze(0), k.repeat_interleave(4, 0).unsqueeze(0),
                                                  v.repeat_interleave(4, 0).unsqueeze(0)).squeeze(0) - exact).abs().max()
    two = cpu_kernels.decode_attend(q, k, v)
    assert (two - exact).abs().max() <= 1.5 * torch_error + 1e-6
    cpu_kernels.enable(1)
    try:
        one = cpu_kernels.decode_attend(q, k, v)
    finally:
        cpu_kernels.enable(2)
    assert torch.equal(one, two)


def test_decode_attention_kernel_leaves_other_inputs_to_torch():
    assert cpu_kernels.decode_attend(torch.randn(4, 1, 12), torch.randn(2, 10, 12), torch.randn(2, 10, 12)) is None
    assert cpu_kernels.decode_attend(torch.randn(4, 2, 8), torch.randn(2, 10, 8), torch.randn(2, 10, 8)) is None
    bf = torch.randn(2, 10, 8, dtype=torch.bfloat16)
    assert cpu_kernels.decode_attend(torch.randn(4, 1, 8, dtype=torch.bfloat16), bf, bf) is None
    cpu_kernels.disable()
    try:
        assert cpu_kernels.decode_attend(torch.randn(4, 1, 8), torch.randn(2, 10, 8), torch.randn(2, 10, 8)) is None
    finally:
        cpu_kernels.enable(2)


def test_decode_attention_kernel_from_several_python_threads_at_once():
    g = torch.Generator().manual_seed(4)
    cases = [(torch.randn(8, 1, 32, generator=g), torch.randn(2, 3000 + i, 32, generator=g),
              torch.randn(2, 3000 + i, 32, generator=g)) for i in range(4)]
    refs = [_attention_reference(q, k, v, k.shape[1] - 1) for q, k, v in cases]
    assert _in_four_threads(lambda i: torch.allclose(cpu_kernels.decode_attend(*cases[i]), refs[i], atol=1e-5,
                                                     rtol=1e-5), rounds=20) == []


@pytest.mark.parametrize("overrides", [
    {},                                                   # default tiny model (d_conv 4, conv bias)
    {"mamba_d_conv": 2, "mamba_conv_bias": False, "mamba_d_state": 5, "mamba_proj_bias": True},
    {"mamba_d_conv": 3, "mamba_expand": 3, "mamba_dt_rank": 3, "hidden_size": 40, "num_attention_heads": 4,
     "num_key_value_heads": 2},
    {"num_experts": 5, "num_experts_per_tok": 3, "intermediate_size": 40, "expert_layer_period": 1,
     "expert_layer_offset": 0},                           # every layer MoE, top-3 of 5, ragged sizes
])
def test_decode_with_the_c_kernels_equals_decode_on_torch_ops(tmp_path, overrides):
    path = write_tiny_checkpoint(tmp_path / "ckpt", seed=3, **overrides)
    eng = load_engine(path, device="cpu", dtype="float32")
    assert eng.kernels["gemv"].startswith("C on")
    ids = torch.randint(3, eng.config.vocab_size, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    _, state = eng.prefill(ids, logits="none")

    def steps():
        s, out = state, []
        for t in (5, 9, 300, 7, 11, 64):
            logits, s = eng.decode_step(t, s)
            out.append(logits)
        return torch.cat(out), s

    fast, s_fast = steps()
    cpu_kernels.disable()
    try:
        ref, s_ref = steps()
    finally:
        cpu_kernels.enable(2)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)
    for i in s_ref.ssm:
        torch.testing.assert_close(s_fast.ssm[i], s_ref.ssm[i], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(s_fast.conv[i], s_ref.conv[i], atol=2e-5, rtol=1e-5)   # in_proj rounding


def test_without_a_compiler_the_engine_decodes_on_torch(tmp_path, tiny_checkpoint):
    """No cc: a warning, `kernels["gemv"] == "torch"`, and the same tokens as with the kernels."""
    code = (
        "import sys, torch; sys.path.insert(0, %r)\n"
        "from engine import load_engine\n"
        "eng = load_engine(%r, device='cpu', dtype='float32')\n"
        "print(eng.kernels['gemv'])\n"
        "print(''.join(eng.generate([5, 6, 7, 8], max_new_tokens=6)))\n" % (str(ROOT), str(tiny_checkpoint)))
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), JAMBADOCS_KERNEL_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    kernels, text = out.stdout.splitlines()[0], "\n".join(out.stdout.splitlines()[1:])
    assert kernels == "torch"
    assert "no-such-cc" in out.stderr and "decode and attention run on torch ops" in out.stderr
    eng = load_engine(tiny_checkpoint, device="cpu", dtype="float32")
    assert "".join(eng.generate([5, 6, 7, 8], max_new_tokens=6)) == text


def test_build_names_the_compiler_and_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMBADOCS_KERNEL_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="no-such-cc"):
        cpu_kernels.build(compiler=str(tmp_path / "no-such-cc"))
    fake = tmp_path / "failing-cc"
    fake.write_text("#!/bin/sh\necho 'decode.c:1: error: something broke' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match="something broke"):
        cpu_kernels.build(compiler=str(fake))
    assert list(tmp_path.glob("*.so")) == []              # no half-written library left behind


def test_a_damaged_cached_library_is_built_again(tmp_path):
    """A truncated .so in the cache (a full disk, a crash elsewhere) is replaced, not fatal. The
    cache starts with a copy of this session's library (the one build the test needs is the rebuild)."""
    built = cpu_kernels.build()
    shutil.copy(built, tmp_path / built.name)
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from engine import cpu_kernels\n"
        "path = cpu_kernels.build()\n"
        "path.write_bytes(path.read_bytes()[:100])\n"
        "print(cpu_kernels.enable(2), cpu_kernels.build() == path, path.stat().st_size > 1000)\n" % str(ROOT))
    env = dict(os.environ, JAMBADOCS_KERNEL_CACHE=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


def test_a_jamba_mini_sized_mamba_step_equals_torch_ops():
    """E 8192, N 16, dt rank 256 (Jamba 1.5 Mini's mixer; a small hidden size keeps in_proj small):
    the fused step, whose x_proj and dt_proj products run on the pool, equals the torch ops."""
    from engine.mamba import mamba_mixer
    from engine.weights import MambaWeights
    g = torch.Generator().manual_seed(7)
    D, E, N, R, K = 64, 8192, 16, 256, 4
    r = lambda *s, std=1.0: torch.randn(*s, generator=g) * std          # noqa: E731
    w = MambaWeights(in_proj=r(2 * E, D, std=D ** -0.5), in_proj_bias=None, conv_w=r(K, E).t(), conv_b=r(E),
                     x_proj=r(R + 2 * N, E, std=E ** -0.5), dt_proj=r(E, R, std=R ** -0.5), dt_bias=r(E) - 3,
                     A=-torch.rand(E, N, generator=g) * 8, D=r(E), out_proj=r(D, E, std=E ** -0.5),
                     out_proj_bias=None, dbc_norm=r(R + 2 * N))
    x, window, h0 = r(1, D), r(K - 1, E), r(E, N)
    fast = mamba_mixer(w, x, window, h0, 1e-6)
    assert cpu_kernels.mamba_step(w, cpu_kernels.linear(x, w.in_proj), window, h0, 1e-6) is not None
    cpu_kernels.disable()
    try:
        ref = mamba_mixer(w, x, window, h0, 1e-6)
    finally:
        cpu_kernels.enable(2)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("N,K", [(1, 1), (33, 17), (2048, 256), (256, 1024)])
def test_int8_gemv_equals_the_int8_linear_it_replaces(N, K):
    from engine.quant import Int8Weight, int8_linear
    g = torch.Generator().manual_seed(N + K)
    w = Int8Weight.quantize(torch.randn(N, K, generator=g))
    x, b = torch.randn(1, K, generator=g), torch.randn(N, generator=g)
    for bias in (None, b):
        torch.testing.assert_close(cpu_kernels.linear(x, w, bias), int8_linear(x, w, bias), atol=1e-4 * K ** 0.5, rtol=1e-5)


def test_int8_experts_decode_on_the_c_gemv_as_on_torch_ops(tiny_checkpoint):
    """ExpertsInt8 decode on the fused C MLP / MoE (int8 rows and scales read in the GEMV) equals
    the torch ops on the same int8 weights."""
    from engine.quant import Int8Weight
    from engine.weights import MoEWeights
    eng = load_engine(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8")
    x = torch.randn(1, eng.config.hidden_size, generator=torch.Generator().manual_seed(1))
    ffns = [layer.ffn for layer in eng.weights.layers]
    assert any(isinstance(f, MoEWeights) for f in ffns) and any(not isinstance(f, MoEWeights) for f in ffns)
    for f in ffns:
        expert = f.experts[0] if isinstance(f, MoEWeights) else f
        assert isinstance(expert.gate_up, Int8Weight)
        fused = cpu_kernels.moe(f, x) if isinstance(f, MoEWeights) else cpu_kernels.mlp(f, x)
        assert fused is not None                                          # int8 blocks run fused
    ids = torch.randint(3, eng.config.vocab_size, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    _, state = eng.prefill(ids, logits="none")

    def steps():
        s, out = state, []
        for t in (5, 9, 300, 7):
            logits, s = eng.decode_step(t, s)
            out.append(logits)
        return torch.cat(out)

    fast = steps()
    cpu_kernels.disable()
    try:
        ref = steps()
    finally:
        cpu_kernels.enable(2)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)


# -- prefill attention (attention.c) ---------------------------------------------------------------

def _attention_reference(q, k, v, past):
    """Causal GQA attention in float64, written out: query t sees keys 0..past+t."""
    (H, T, Hd), G = q.shape, k.shape[0]
    kk, vv = (x.double().repeat_interleave(H // G, dim=0) for x in (k, v))          # [H, L, Hd]
    s = q.double() @ kk.transpose(1, 2) * Hd ** -0.5                                  # [H, T, L]
    seen = torch.arange(k.shape[1])[None, :] <= past + torch.arange(T)[:, None]      # [T, L]
    return (s.masked_fill(~seen, float("-inf")).softmax(-1) @ vv).float()


@pytest.mark.parametrize("H,G,T,past,Hd", [
    (8, 2, 1024, 0, 32), (8, 2, 37, 5000, 32),           # the bench model: a fresh chunk, a question after long context
    (4, 4, 1, 0, 8), (4, 4, 2, 0, 8), (6, 3, 50, 70, 16),  # MHA, tiny T, ragged rows
    (8, 1, 30, 100, 128), (2, 2, 200, 1000, 64),          # MQA at a real head dim
    (3, 1, 25, 63, 4), (5, 5, 97, 1, 12), (2, 1, 7, 190, 256),
])
def test_attention_kernel_equals_causal_softmax_attention(H, G, T, past, Hd):
    g = torch.Generator().manual_seed(H * 7 + T + past)
    qkv = torch.randn(T, H + 2 * G, Hd, generator=g).transpose(0, 1)                   # q as the engine views it
    q = qkv[:H]
    buf = torch.randn(2, G, past + T + 13, Hd, generator=g)                           # K/V rows of a reserved buffer
    k, v = buf[0, :, :past + T], buf[1, :, :past + T]
    got = cpu_kernels.attend(q, k, v, past)
    assert got is not None and got.shape == (H, T, Hd)
    torch.testing.assert_close(got, _attention_reference(q, k, v, past), atol=2e-6, rtol=1e-5)
    assert got.transpose(0, 1).is_contiguous()                                         # [T, H, Hd] for o_proj


def test_attention_kernel_with_peaked_and_flat_scores():
    """Large scores (softmax nearly one-hot, its max changing between key blocks): as close to the
    float64 result as torch's fp32 SDPA is (the fp32 scores themselves are off by ~1e-5 there);
    equal scores: the mean of the values seen."""
    g = torch.Generator().manual_seed(5)
    q, k, v = torch.randn(4, 300, 32, generator=g) * 30, torch.randn(2, 400, 32, generator=g) * 3, torch.randn(2, 400, 32, generator=g)
    k[:, 350] *= 4                                        # one key far ahead of the others, late
    exact = _attention_reference(q, k, v, 100)
    torch_error = (attend_masked(q, k, v, 100) - exact).abs().max()
    assert (cpu_kernels.attend(q, k, v, 100) - exact).abs().max() <= 1.5 * torch_error
    flat = torch.zeros(2, 300, 8)
    vals = torch.randn(1, 300, 8, generator=g)
    got = cpu_kernels.attend(torch.zeros(4, 200, 8), flat, vals.expand(2, -1, -1).contiguous(), 100)
    expect = vals[0].cumsum(0)[100:] / torch.arange(101, 301)[:, None]                # the mean of the keys seen
    torch.testing.assert_close(got, expect.expand(4, -1, -1), atol=1e-5, rtol=1e-5)


def test_attention_kernel_leaves_other_inputs_to_torch():
    q, k = torch.randn(4, 10, 6), torch.randn(2, 10, 6)                                # Hd not a multiple of 4
    assert cpu_kernels.attend(q, k, k, 0) is None
    q, k = torch.randn(2, 10, 260), torch.randn(2, 10, 260)                            # Hd above 256
    assert cpu_kernels.attend(q, k, k, 0) is None
    q, k = torch.randn(4, 10, 8, dtype=torch.bfloat16), torch.randn(2, 10, 8, dtype=torch.bfloat16)
    assert cpu_kernels.attend(q, k, k, 0) is None
    q, k = torch.randn(4, 10, 8), torch.randn(2, 12, 8)                                # keys != past + T
    assert cpu_kernels.attend(q, k, k, 0) is None


def test_attention_kernel_from_several_python_threads_at_once():
    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(8, 64 + i, 32, generator=g), torch.randn(2, 500 + 64 + i, 32, generator=g),
              torch.randn(2, 500 + 64 + i, 32, generator=g)) for i in range(4)]
    refs = [_attention_reference(q, k, v, 500) for q, k, v in cases]
    assert _in_four_threads(lambda i: torch.allclose(cpu_kernels.attend(*cases[i], 500), refs[i], atol=1e-5, rtol=1e-5),
                            rounds=20) == []


def test_prefill_with_the_attention_and_scan_kernels_equals_prefill_on_torch_ops(tmp_path):
    """Chunked prefill with continuation (attention over past keys + the causal diagonal, the scan
    from the previous chunk's state) on the C kernels = the torch path, for logits, K/V and SSM states."""
    path = write_tiny_checkpoint(tmp_path / "ckpt", seed=4, num_attention_heads=4, num_key_value_heads=1,
                                 attn_layer_period=2, attn_layer_offset=1)
    eng = load_engine(path, device="cpu", dtype="float32", chunk_size=48)
    ids = torch.randint(3, eng.config.vocab_size, (200,), generator=torch.Generator().manual_seed(3)).tolist()
    fast, s_fast = eng.prefill(ids)
    cpu_kernels.disable()
    try:
        ref, s_ref = eng.prefill(ids)
    finally:
        cpu_kernels.enable(2)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)
    for i in s_ref.kv:
        torch.testing.assert_close(s_fast.kv[i].k, s_ref.kv[i].k, atol=2e-5, rtol=1e-5)
    assert s_ref.ssm
    for i in s_ref.ssm:
        torch.testing.assert_close(s_fast.ssm[i], s_ref.ssm[i], atol=2e-5, rtol=1e-5)


# -- exp2 (simd.h) and the prefill scan (scan.c) ---------------------------------------------------

def test_exp2_within_two_ulp_of_float64_over_its_range():
    t = torch.cat([torch.linspace(-126, 126, 400_001), torch.randn(10_000) * 3, torch.arange(-126, 127.0)])
    got = cpu_kernels.exp2(t).double()
    exact = torch.exp2(t.double())
    assert ((got - exact).abs() / exact).max() <= 1.2e-7                 # 2^-23 = 1.19e-7: two ulp at most
    ints = torch.arange(-126, 127.0)
    assert torch.equal(cpu_kernels.exp2(ints), torch.exp2(ints))          # powers of two exactly
    low = cpu_kernels.exp2(torch.tensor([-127.0, -200.0, -1e30, float("-inf")]))
    assert (low <= 2.0 ** -126).all() and (low >= 0).all()                # clamped: no denormals, no NaN
    assert torch.isfinite(cpu_kernels.exp2(torch.tensor([130.0, 1e30]))).all()   # clamped at 2^126


def _scan_inputs(T, E, N, seed):
    """Inputs as mamba_mixer hands them over: B, C column slices of the normed x_proj output, z the
    second half of in_proj's output (row strides 3 + 2N and 2E)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, E, generator=g)
    dt = F.softplus(torch.randn(T, E, generator=g) - 1)
    A = -torch.exp(torch.randn(E, N, generator=g))
    dbc = torch.randn(T, 3 + 2 * N, generator=g)
    z = torch.randn(T, 2 * E, generator=g)[:, E:]
    return x, dt, A, dbc[:, 3:3 + N], dbc[:, 3 + N:], torch.randn(E, generator=g), z, torch.randn(E, N, generator=g)


def _scan_reference(x, dt, A, B, C, D, z, h0):
    """The recurrence in float64, one token at a time."""
    h, ys = h0.double(), []
    for t in range(x.shape[0]):
        h = torch.exp(dt[t].double()[:, None] * A.double()) * h + (dt[t] * x[t]).double()[:, None] * B[t].double()
        ys.append((h @ C[t].double() + D.double() * x[t].double()) * F.silu(z[t].double()))
    return torch.stack(ys), h


@pytest.mark.parametrize("T,E,N", [
    (1024, 512, 16),                                   # the bench model's chunk
    (37, 72, 16), (300, 20, 16), (5, 60, 7),           # channels past the last unit of 16 (run one at a time)
    (1, 8, 3), (2, 16, 1), (64, 32, 64),               # one token, one state, a large state
])
def test_scan_kernel_is_as_close_to_float64_as_the_torch_scan(T, E, N):
    inputs = _scan_inputs(T, E, N, seed=T + E + N)
    h0_before = inputs[-1].clone()
    got_y, got_h = cpu_kernels.scan(*inputs)
    assert torch.equal(inputs[-1], h0_before)                                   # h0 is not modified
    exact_y, exact_h = _scan_reference(*inputs)
    cpu_kernels.disable()
    try:
        torch_y, torch_h = mamba.ssm_scan(*inputs)                              # the torch path
    finally:
        cpu_kernels.enable(2)
    for got, ref, exact in ((got_y, torch_y, exact_y), (got_h, torch_h, exact_h)):
        err, torch_err = (got.double() - exact).abs().max(), (ref.double() - exact).abs().max()
        assert err <= 3 * torch_err + 1e-6 * exact.abs().max(), (err, torch_err)


def test_scan_kernel_carries_the_state_across_any_split():
    """Two calls, the second from the first's state, give one call's outputs (exactly: the kernel
    walks the tokens in order whatever the split)."""
    x, dt, A, B, C, D, z, h0 = _scan_inputs(200, 40, 16, seed=1)
    y, h = cpu_kernels.scan(x, dt, A, B, C, D, z, h0)
    y1, h1 = cpu_kernels.scan(x[:77], dt[:77], A, B[:77], C[:77], D, z[:77], h0)
    y2, h2 = cpu_kernels.scan(x[77:], dt[77:], A, B[77:], C[77:], D, z[77:], h1)
    assert torch.equal(torch.cat([y1, y2]), y) and torch.equal(h2, h)


def test_scan_kernel_leaves_other_inputs_to_torch():
    x, dt, A, B, C, D, z, h0 = _scan_inputs(10, 16, 4, seed=2)
    assert cpu_kernels.scan(x.t().contiguous().t(), dt, A, B, C, D, z, h0) is None       # column-major x
    assert cpu_kernels.scan(x.bfloat16(), dt, A, B, C, D, z, h0) is None
    assert cpu_kernels.scan(x, dt, A.t().contiguous().t(), B, C, D, z, h0) is None     # A not contiguous
    assert cpu_kernels.scan(x, dt[:9], A, B, C, D, z, h0) is None                      # mismatched shapes


def test_scan_kernel_from_several_python_threads_at_once():
    cases = [_scan_inputs(100 + i, 48, 16, seed=10 + i) for i in range(4)]
    refs = [cpu_kernels.scan(*c) for c in cases]
    assert _in_four_threads(lambda i: all(torch.equal(a, b) for a, b in zip(cpu_kernels.scan(*cases[i]), refs[i])),
                            rounds=20) == []


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
def test_the_kernels_build_for_an_x86_64_cpu_without_avx(tmp_path):
    """-march=native on a CPU without AVX (older or low-end x86-64) must still build, else every
    kernel, decode's too, falls back to torch there."""
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        pytest.skip("no C compiler")
    flags = [f if f != "-march=native" else "-march=x86-64" for f in cpu_kernels.FLAGS] + ["-Wno-psabi"]
    res = subprocess.run([cc, *flags, "-o", str(tmp_path / "k.so"), *map(str, cpu_kernels.SOURCES), *cpu_kernels.LIBS],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
