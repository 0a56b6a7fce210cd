"""CPU decode kernels (engine/csrc/decode.c): the pooled GEMV, the fused Mamba step, MLP, MoE and
RMSNorm, against the torch ops they replace."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine import cpu_decode, load_engine
from engine.testing import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def kernels_on():
    if not cpu_decode.enable(2):
        pytest.skip("no C compiler here: the CPU decode kernels cannot be built")
    yield


def _layouts(w: torch.Tensor):
    yield w                                              # row-major [N, K]
    yield w.t().contiguous().t()                         # column-major: a transposed [K, N] buffer


@pytest.mark.parametrize("N,K", [(1, 1), (3, 5), (33, 17), (48, 512), (200, 300), (2048, 256), (256, 1024), (4096, 256)])
def test_gemv_equals_f_linear_in_both_layouts_with_and_without_bias(N, K):
    g = torch.Generator().manual_seed(N * 1000 + K)
    w0, x, b = torch.randn(N, K, generator=g), torch.randn(1, K, generator=g), torch.randn(N, generator=g)
    for w in _layouts(w0):
        assert cpu_decode._layout(w) is not None
        for bias in (None, b):
            got = cpu_decode.linear(x, w, bias)
            torch.testing.assert_close(got, F.linear(x, w0, bias), atol=1e-4 * K ** 0.5, rtol=1e-5)


def test_linear_leaves_other_products_to_torch():
    w = torch.randn(64, 32)
    x2 = torch.randn(2, 32)                               # two rows: a prefill, not a GEMV
    assert torch.equal(cpu_decode.linear(x2, w), F.linear(x2, w))
    xb, wb = torch.randn(1, 32, dtype=torch.bfloat16), w.bfloat16()
    assert cpu_decode.linear(xb, wb).dtype == torch.bfloat16
    strided = torch.randn(64, 64)[:, ::2]                 # neither row- nor column-major
    assert cpu_decode._layout(strided) is None
    torch.testing.assert_close(cpu_decode.linear(torch.randn(1, 32), strided).shape, torch.Size([1, 64]))


def test_gemv_from_several_python_threads_at_once():
    """One product runs on the pool at a time; the others compute on their own thread, all correct."""
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(1024 + 32 * i, 256, generator=g) for i in range(4)]
    xs = [torch.randn(1, 256, generator=g) for _ in ws]
    refs = [F.linear(x, w) for x, w in zip(xs, ws)]
    errors = []

    def work(i):
        for _ in range(200):
            if not torch.allclose(cpu_decode.linear(xs[i], ws[i]), refs[i], atol=1e-3, rtol=1e-5):
                errors.append(i)
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_working_pool():
    w, x = torch.randn(2048, 256), torch.randn(1, 256)
    ref = F.linear(x, w)
    cpu_decode.linear(x, w)                               # the parent's pool is running
    pid = os.fork()
    if pid == 0:                                          # child: its workers are gone; a new pool starts
        ok = all(torch.allclose(cpu_decode.linear(x, w), ref, atol=1e-3) for _ in range(50))
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


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
    cpu_decode.disable()
    try:
        ref, s_ref = steps()
    finally:
        cpu_decode.enable(2)
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
    assert "no-such-cc" in out.stderr and "decode runs on torch ops" in out.stderr
    eng = load_engine(tiny_checkpoint, device="cpu", dtype="float32")
    assert "".join(eng.generate([5, 6, 7, 8], max_new_tokens=6)) == text


def test_build_names_the_compiler_and_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JAMBADOCS_KERNEL_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="no-such-cc"):
        cpu_decode.build(compiler=str(tmp_path / "no-such-cc"))
    fake = tmp_path / "failing-cc"
    fake.write_text("#!/bin/sh\necho 'decode.c:1: error: something broke' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(RuntimeError, match="something broke"):
        cpu_decode.build(compiler=str(fake))
    assert list(tmp_path.glob("*.so")) == []              # no half-written library left behind


def test_a_damaged_cached_library_is_built_again(tmp_path):
    """A truncated .so in the cache (a full disk, a crash elsewhere) is replaced, not fatal."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from engine import cpu_decode\n"
        "path = cpu_decode.build()\n"
        "path.write_bytes(path.read_bytes()[:100])\n"
        "print(cpu_decode.enable(2), cpu_decode.build() == path, path.stat().st_size > 1000)\n" % str(ROOT))
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
    assert cpu_decode.mamba_step(w, cpu_decode.linear(x, w.in_proj), window, h0, 1e-6) is not None
    cpu_decode.disable()
    try:
        ref = mamba_mixer(w, x, window, h0, 1e-6)
    finally:
        cpu_decode.enable(2)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("N,K", [(1, 1), (33, 17), (2048, 256), (256, 1024)])
def test_int8_gemv_equals_the_int8_linear_it_replaces(N, K):
    from engine.quant import Int8Weight, int8_linear
    g = torch.Generator().manual_seed(N + K)
    w = Int8Weight.quantize(torch.randn(N, K, generator=g))
    x, b = torch.randn(1, K, generator=g), torch.randn(N, generator=g)
    for bias in (None, b):
        torch.testing.assert_close(cpu_decode.linear(x, w, bias), int8_linear(x, w, bias), atol=1e-4 * K ** 0.5, rtol=1e-5)


def test_int8_experts_decode_on_the_c_gemv_as_on_torch_ops(tiny_checkpoint):
    eng = load_engine(tiny_checkpoint, device="cpu", dtype="float32", quantize="int8")
    ids = torch.randint(3, eng.config.vocab_size, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    _, state = eng.prefill(ids, logits="none")

    def steps():
        s, out = state, []
        for t in (5, 9, 300, 7):
            logits, s = eng.decode_step(t, s)
            out.append(logits)
        return torch.cat(out)

    fast = steps()
    cpu_decode.disable()
    try:
        ref = steps()
    finally:
        cpu_decode.enable(2)
    torch.testing.assert_close(fast, ref, atol=2e-5, rtol=1e-5)
