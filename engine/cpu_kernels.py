"""CPU kernels (engine/csrc/), fp32: a pooled GEMV for every one-row product; the one-token Mamba
mixer step, SwiGLU MLP, mixture of experts and RMSNorm as one call each (decode.c); and causal
attention over many queries, prefill's and a continuation's (attention.c).

torch's CPU GEMV runs on one thread; the pooled GEMV splits each product over `threads` cores.
A decode step on torch ops is some hundred small ops whose dispatch costs more than their
arithmetic; the fused blocks replace most of them. The torch functions stay the reference and the
fallback: each function here returns None (or `linear` calls `F.linear`) when its tensors are not
fp32 CPU tensors in a layout the kernels read. The C files are compiled on first use with the
machine's C compiler (`cc`, or $CC) into one library in a per-user cache, keyed by the sources, the flags and the
CPU (it is built with -march=native); without a compiler, or with JAMBADOCS_KERNELS=torch,
everything runs on torch ops.

    linear(x [T, K], w [N, K] (row- or column-major), b [N] | None) -> [T, N]
    mamba_step(w: MambaWeights, xz [1, 2E], window [K-1, E], h0 [E, N], eps) -> (y [1, E], window, h) | None
    mlp(w: MLPWeights, x [1, D]) -> MLP(x) [1, D] | None
    rms_norm(x [1, n], w [n], eps) -> [1, n] | None
    moe(w: MoEWeights, x [1, D]) -> [1, D] | None
    attend(q [H, T, Hd], k, v [G, past+T, Hd], past) -> [H, T, Hd] | None
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import subprocess
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.cbuild import build_library

log = logging.getLogger(__name__)

CSRC = Path(__file__).parent / "csrc"
SOURCES = [CSRC / "decode.c", CSRC / "attention.c", CSRC / "decode_attention.c", CSRC / "scan.c"]
HEADERS = [CSRC / "simd.h", CSRC / "pool.h"]
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-pthread"]
LIBS = ["-lm"]

_lib: ctypes.CDLL | None = None
_threads = 0                       # pool size (caller + workers); 0: not started
_tried = False
_lock = threading.Lock()


def _cpu_id() -> str:
    """What -march=native compiles for: the architecture and the CPU's model and feature flags."""
    parts = [platform.machine()]
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part"):
                parts.append(line)
                if len(parts) > 3:
                    break
    except OSError:
        pass
    return "\n".join(parts)


def build(compiler: str | None = None) -> Path:
    """Compile the C sources (once per sources, flags and CPU) and return the shared library's path.
    Raises RuntimeError with the compiler's message when it cannot be built."""
    return build_library("jambadocs-kernels", SOURCES, FLAGS, LIBS, key_extra=_cpu_id().encode(),
                         headers=HEADERS, compiler=compiler)


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))                                      # calls release the GIL
    lib.jd_gemv.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    lib.jd_gemv.restype = None
    lib.jd_pool_start.argtypes = [ctypes.c_int]
    lib.jd_pool_start.restype = ctypes.c_int
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.jd_mamba_step.argtypes = [p, p, p, i64, i64, p, p, p, ctypes.c_float, p, p, p, p, p,
                                  i64, i64, i64, i64, p, p, p, p]
    lib.jd_mamba_step.restype = None
    lib.jd_mlp.argtypes = [p, p, ctypes.c_int, p, p, p, ctypes.c_int, p, p, p, i64, i64, ctypes.c_float,
                           ctypes.c_int, p]
    lib.jd_mlp.restype = None
    lib.jd_rms_norm.argtypes = [p, p, p, i64, ctypes.c_float]
    lib.jd_rms_norm.restype = None
    lib.jd_moe.argtypes = [p, p, i64, i64, p, p, p, p, p, p, p, p, p, i64, i64, p, p]
    lib.jd_moe.restype = None
    lib.jd_gemv_q8.argtypes = [p, p, p, p, p, i64, i64]
    lib.jd_gemv_q8.restype = None
    lib.jd_attend.argtypes = [p, i64, i64, p, p, i64, i64, p, i64, i64, i64, i64, i64, i64, i64, ctypes.c_float]
    lib.jd_attend.restype = ctypes.c_int
    lib.jd_decode_attend.argtypes = [p, i64, p, p, i64, i64, p, i64, i64, i64, i64, ctypes.c_float]
    lib.jd_decode_attend.restype = ctypes.c_int
    lib.jd_scan.argtypes = [p, i64, p, i64, p, p, i64, p, i64, p, p, i64, p, p, p, i64, i64, i64]
    lib.jd_scan.restype = ctypes.c_int
    lib.jd_exp2.argtypes = [p, p, i64]
    lib.jd_exp2.restype = None
    return lib


def _default_threads() -> int:
    """torch's thread count, or 1 under OMP_WAIT_POLICY=ACTIVE: torch's idle OpenMP workers then spin
    on the cores the pool would use (bench model decode: 146 tok/s with 2 threads, 216-255 with 1,
    180 on torch's GEMV)."""
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "ACTIVE":
        return 1
    return torch.get_num_threads()


def enable(threads: int | None = None) -> bool:
    """Build/load the library once and size its pool (default: `_default_threads`).
    Returns whether `linear` now uses it."""
    global _lib, _threads, _tried
    if os.environ.get("JAMBADOCS_KERNELS", "auto").lower() == "torch":
        return False
    with _lock:
        if _lib is None and not _tried:
            _tried = True
            try:
                path = build()
                try:
                    _lib = _load(path)
                except OSError:                                       # a damaged cached library: build anew
                    path.unlink(missing_ok=True)
                    _lib = _load(build())
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log.warning("CPU kernels not available, decode and attention run on torch ops: %s", e)
        if _lib is None:
            return False
        n = max(1, threads or _default_threads())
        if n != _threads:
            _lib.jd_pool_start(n)
            _threads = n
    return True


def disable() -> None:
    """Back to `F.linear` for every product (the library stays loaded; `enable` turns it on again)."""
    global _threads
    _threads = 0


def active() -> bool:
    """Whether one-row fp32 CPU products run on the pooled GEMV now."""
    return _threads > 0


def describe() -> str:
    return f"C on {_threads} threads" if _threads else "torch"


def _layout(w: Tensor) -> int | None:
    """0: row-major [N, K]; 1: column-major (a transposed [K, N] buffer); None: neither."""
    N, K = w.shape
    if w.stride(1) == 1 and (w.stride(0) == K or N == 1):
        return 0
    if w.stride(0) == 1 and (w.stride(1) == N or K == 1):
        return 1
    return None


_F32 = torch.float32


def linear(x: Tensor, w, b: Tensor | None = None) -> Tensor:
    """`F.linear`, with one-row fp32 CPU products on the pooled GEMV when it is enabled; w is a
    tensor (row- or column-major) or an ExpertsInt8 weight (`quant.Int8Weight`: int8 q [N, K],
    fp32 scale [N])."""
    if (_threads and x.dim() == 2 and x.shape[0] == 1 and x.dtype is _F32 and x.is_cpu and x.is_contiguous()
            and (b is None or (b.dtype is _F32 and b.is_cpu and b.is_contiguous()))):
        K = x.shape[1]
        if isinstance(w, Tensor):
            if (w.dtype is _F32 and w.is_cpu and w.shape[1] == K and (layout := _layout(w)) is not None
                    and (b is None or b.shape == (w.shape[0],))):
                y = torch.empty(1, w.shape[0])
                _lib.jd_gemv(w.data_ptr(), x.data_ptr(), _ptr(b), y.data_ptr(), w.shape[0], K, layout)
                return y
        elif _int8_rows(w, K) and (b is None or b.shape == w.scale.shape):
            y = torch.empty(1, w.q.shape[0])
            _lib.jd_gemv_q8(w.q.data_ptr(), w.scale.data_ptr(), x.data_ptr(), _ptr(b), y.data_ptr(),
                            w.q.shape[0], K)
            return y
    return F.linear(x, w, b)


def _int8_rows(w, K: int) -> bool:
    """w is an ExpertsInt8 weight the C GEMV reads: int8 q [N, K] row-major, fp32 scale [N], on the CPU."""
    q, scale = getattr(w, "q", None), getattr(w, "scale", None)
    return (isinstance(q, Tensor) and isinstance(scale, Tensor) and q.dtype is torch.int8 and q.is_cpu
            and q.dim() == 2 and q.shape[1] == K and q.is_contiguous() and scale.dtype is _F32
            and scale.is_cpu and scale.is_contiguous() and scale.shape == (q.shape[0],))


def _ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _plan(w, make):
    """The C call's fixed arguments for the weights block `w` (pointers, sizes, layouts; None when
    the block is not in a form the kernels read), made once and kept on the block, which owns the
    tensors the pointers point into."""
    plan = w.__dict__.get("_cpu_kernels_plan", _plan)
    if plan is _plan:
        plan = make(w)
        w.__dict__["_cpu_kernels_plan"] = plan
    return plan


def _f32(*ts: Tensor | None) -> bool:
    return all(t is None or (isinstance(t, Tensor) and t.dtype is _F32 and t.is_cpu) for t in ts)


def _mamba_plan(w) -> tuple | None:
    E, N = w.A.shape
    R, K = w.dt_proj.shape[1], w.conv_w.shape[1]
    if not (_f32(w.conv_w, w.conv_b, w.x_proj, w.dbc_norm, w.dt_proj, w.dt_bias, w.A, w.D)
            and _layout(w.x_proj) == 0 and _layout(w.dt_proj) == 0
            and all(t is None or t.is_contiguous() for t in (w.conv_b, w.dbc_norm, w.dt_bias, w.A, w.D))):
        return None
    cw = w.conv_w
    return (E, N, R, K, (cw.data_ptr(), cw.stride(0), cw.stride(1), _ptr(w.conv_b), w.x_proj.data_ptr(),
                         w.dbc_norm.data_ptr()),
            (w.dt_proj.data_ptr(), w.dt_bias.data_ptr(), w.A.data_ptr(), w.D.data_ptr()))


def mamba_step(w, xz: Tensor, window: Tensor, h0: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor] | None:
    """The Mamba mixer between in_proj and out_proj for one token (engine/mamba.py's math), or None
    when these tensors are not all fp32, CPU and in the layouts the C step reads."""
    if not _threads or (plan := _plan(w, _mamba_plan)) is None:
        return None
    E, N, R, K, conv_args, ssm_args = plan
    if not (xz.dtype is _F32 and xz.is_cpu and xz.shape == (1, 2 * E) and xz.is_contiguous()
            and window.dtype is _F32 and window.is_contiguous() and h0.dtype is _F32 and h0.is_contiguous()):
        return None
    y, window_out, h = torch.empty(1, E), torch.empty(K - 1, E), torch.empty(E, N)
    scratch = torch.empty(2 * E + R + 2 * N)
    _lib.jd_mamba_step(xz.data_ptr(), window.data_ptr(), *conv_args, eps, *ssm_args, h0.data_ptr(),
                       E, N, R, K, y.data_ptr(), window_out.data_ptr(), h.data_ptr(), scratch.data_ptr())
    return y, window_out, h


def _matrix(w, N: int, K: int) -> tuple[int, int, int, int] | None:
    """A [N, K] weight as the C MLP reads it: (fp32 pointer, column-major flag, int8 pointer, scales
    pointer), 0 for what it is not; None when it is in no form the kernels read."""
    if isinstance(w, Tensor):
        layout = _layout(w) if _f32(w) and w.shape == (N, K) else None
        return None if layout is None else (w.data_ptr(), layout, 0, 0)
    if _int8_rows(w, K) and w.q.shape[0] == N:                        # ExpertsInt8: int8 rows and scales
        return 0, 0, w.q.data_ptr(), w.scale.data_ptr()
    return None


def _mlp_plan(w) -> tuple | None:
    D, I = w.down.shape
    gu, dn = _matrix(w.gate_up, 2 * I, D), _matrix(w.down, D, I)
    return None if gu is None or dn is None else (D, I, gu, dn)


def mlp(w, x: Tensor) -> Tensor | None:
    """down(silu(gate x) * up x) for MLPWeights w (fp32, or ExpertsInt8 int8 rows with scales) and x
    [1, D] (fp32) in one C call; None when the weights are in no form the kernels read."""
    if not _threads or (plan := _plan(w, _mlp_plan)) is None:
        return None
    D, I, gu, dn = plan
    if not (x.dtype is _F32 and x.is_cpu and x.shape == (1, D) and x.is_contiguous()):
        return None
    out, scratch = torch.empty(1, D), torch.empty(2 * I + D)
    _lib.jd_mlp(x.data_ptr(), *gu, *dn, out.data_ptr(), D, I, 1.0, 0, scratch.data_ptr())
    return out


def rms_norm(x: Tensor, w: Tensor, eps: float) -> Tensor | None:
    """x [1, n] * rsqrt(mean(x^2) + eps) * w [n] in one C call (fp32 CPU), else None."""
    if not (_threads and x.dtype is _F32 and w.dtype is _F32 and x.is_cpu and x.dim() == 2 and x.shape[0] == 1
            and x.is_contiguous() and w.is_contiguous() and w.shape[0] == x.shape[1]):
        return None
    y = torch.empty(1, x.shape[1])
    _lib.jd_rms_norm(x.data_ptr(), w.data_ptr(), y.data_ptr(), x.shape[1], eps)
    return y


def _moe_plan(w) -> tuple | None:
    experts = [_plan(e, _mlp_plan) for e in w.experts]
    if not _f32(w.router) or _layout(w.router) != 0 or any(p is None for p in experts) \
            or len({p[:2] for p in experts}) != 1:
        return None
    D, I = experts[0][:2]
    X = len(experts)
    ptrs = ctypes.c_void_p * X
    flags = ctypes.c_int * X
    # per matrix: fp32 pointers, column-major flags, int8 pointers, scale pointers (kept alive by the plan)
    arrays = tuple(kind(*[p[m][i] for p in experts])
                   for m in (2, 3) for i, kind in enumerate((ptrs, flags, ptrs, ptrs)))
    return D, I, X, w.top_k, w.router.data_ptr(), arrays


def moe(w, x: Tensor) -> Tensor | None:
    """Jamba's MoE for one token (softmax router, top-k experts weighted by their probabilities, no
    renormalisation: engine/moe.py's math) in one C call, experts fp32 or ExpertsInt8; None when the
    weights are in no form the kernels read."""
    if not _threads or (plan := _plan(w, _moe_plan)) is None:
        return None
    D, I, X, k, router, arrays = plan
    if not (x.dtype is _F32 and x.is_cpu and x.shape == (1, D) and x.is_contiguous()):
        return None
    out = torch.empty(1, D)
    scratch = torch.empty(X + 2 * I + D)
    chosen = torch.empty(k, dtype=torch.int64)
    _lib.jd_moe(x.data_ptr(), router, X, k, *arrays, out.data_ptr(), D, I, scratch.data_ptr(), chosen.data_ptr())
    return out


def attend(q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor | None:
    """Causal GQA attention, engine/attention.py's `attend` (query t sees keys 0..past+t), in one C
    call on the pool: q [H, T, Hd]; k, v [G, past+T, Hd] -> [H, T, Hd], a view of a [T, H, Hd]
    buffer (so `.transpose(0, 1).reshape(T, H * Hd)` for o_proj is free). None when the tensors are
    not fp32 CPU ones with a contiguous last dim, or Hd is not a multiple of 4 up to 256."""
    (H, T, Hd), (G, L, _) = q.shape, k.shape
    if not (_threads and _f32(q, k, v) and L == past + T and v.shape == k.shape and k.stride() == v.stride()
            and q.stride(2) == 1 and k.stride(2) == 1 and H % G == 0):
        return None
    out = torch.empty(T, H, Hd)
    rc = _lib.jd_attend(q.data_ptr(), q.stride(0), q.stride(1), k.data_ptr(), v.data_ptr(), k.stride(0),
                        k.stride(1), out.data_ptr(), Hd, H * Hd, H, G, T, past, Hd, Hd ** -0.5)
    return out.transpose(0, 1) if rc == 0 else None


def decode_attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor | None:
    """One query per head over all L keys (decode's attention, engine/attention.py's `attend` with
    T = 1) in one C call on the pool: q [H, 1, Hd]; k, v [G, L, Hd] -> [H, 1, Hd]. None when the
    tensors are not fp32 CPU ones with a contiguous last dim, or Hd is not a multiple of 8 up to 256."""
    (H, T, Hd), (G, L, _) = q.shape, k.shape
    if not (_threads and T == 1 and _f32(q, k, v) and v.shape == k.shape and k.stride() == v.stride()
            and q.stride(2) == 1 and k.stride(2) == 1 and H % G == 0 and L > 0):
        return None
    out = torch.empty(H, 1, Hd)
    rc = _lib.jd_decode_attend(q.data_ptr(), q.stride(0), k.data_ptr(), v.data_ptr(), k.stride(0), k.stride(1),
                               out.data_ptr(), H, G, L, Hd, Hd ** -0.5)
    return out if rc == 0 else None


def _rows(t: Tensor, T: int, n: int) -> bool:
    """t is an fp32 CPU [T, n] tensor whose rows are contiguous (any row stride)."""
    return t.dtype is _F32 and t.is_cpu and t.shape == (T, n) and (t.stride(1) == 1 or n == 1)


def scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
         h0: Tensor) -> tuple[Tensor, Tensor] | None:
    """engine/mamba.py's `ssm_scan` (x, dt, z [T, E]; A [E, N]; B, C [T, N]; D [E]; h0 [E, N] ->
    y [T, E], h [E, N]) in one C call on the pool, channels split between the threads; None when
    the tensors are not fp32 CPU ones with contiguous rows (A, D and h0 contiguous)."""
    (T, E), N = x.shape, A.shape[1]
    if not (_threads and T > 0 and all(_rows(t, T, E) for t in (x, dt, z)) and _rows(B, T, N) and _rows(C, T, N)
            and _f32(A, D, h0) and A.shape == (E, N) and D.shape == (E,) and h0.shape == (E, N)
            and A.is_contiguous() and D.is_contiguous() and h0.is_contiguous()):
        return None
    y, h = torch.empty(T, E), torch.empty(E, N)
    rc = _lib.jd_scan(x.data_ptr(), x.stride(0), dt.data_ptr(), dt.stride(0), A.data_ptr(), B.data_ptr(),
                      B.stride(0), C.data_ptr(), C.stride(0), D.data_ptr(), z.data_ptr(), z.stride(0),
                      h0.data_ptr(), y.data_ptr(), h.data_ptr(), T, E, N)
    return (y, h) if rc == 0 else None


def exp2(t: Tensor) -> Tensor:
    """2^t by the kernels' vector exp2 (engine/csrc/simd.h), for the tests; t fp32 CPU."""
    if _lib is None:
        raise RuntimeError("the CPU kernels are not loaded")
    t = t.detach().float().contiguous()
    out = torch.empty_like(t)
    _lib.jd_exp2(t.data_ptr(), out.data_ptr(), t.numel())
    return out
