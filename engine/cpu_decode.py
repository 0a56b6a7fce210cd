"""CPU decode kernels (engine/csrc/decode.c), fp32: a pooled GEMV for one-row products and the
fused one-token Mamba step.

torch's CPU GEMV runs on one thread; `gemv` splits each product over `threads` cores. A Mamba
decode step between in_proj and out_proj is some twenty small torch ops, which cost more than
their arithmetic; `mamba_step` is one C call. The C file
is compiled on first use with the machine's C compiler (`cc`, or $CC) into a per-user cache,
keyed by the source, the flags and the CPU (it is built with -march=native); without a compiler,
or with JAMBADOCS_KERNELS=torch, `linear` is plain `F.linear` and everything still works.

    linear(x [T, K], w [N, K] (row- or column-major), b [N] | None) -> [T, N]
    mamba_step(w: MambaWeights, xz [1, 2E], window [K-1, E], h0 [E, N], eps) -> (y [1, E], window, h) | None
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "decode.c"
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


def cache_dir() -> Path:
    base = os.environ.get("JAMBADOCS_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jambadocs", "kernels")
    return Path(base)


def build(compiler: str | None = None) -> Path:
    """Compile decode.c (once per source, flags and CPU) and return the shared library's path.
    Raises RuntimeError with the compiler's message when it cannot be built."""
    cc = compiler or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler ({cc!r} not found)")
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join([cc, *FLAGS, *LIBS]).encode() + _cpu_id().encode()).hexdigest()[:16]
    out = cache_dir() / f"decode-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)         # built aside, then renamed: atomic
    os.close(fd)
    try:
        res = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), *LIBS], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed on {SOURCE.name}: {res.stderr.strip()[-2000:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


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
    return lib


def enable(threads: int | None = None) -> bool:
    """Build/load the library once and size its pool (default: torch's thread count).
    Returns whether `linear` now uses it."""
    global _lib, _threads, _tried
    if os.environ.get("JAMBADOCS_KERNELS", "auto").lower() == "torch":
        return False
    with _lock:
        if _lib is None and not _tried:
            _tried = True
            try:
                _lib = _load(build())
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log.warning("CPU decode kernels not available, decode runs on torch ops: %s", e)
        if _lib is None:
            return False
        n = max(1, threads or torch.get_num_threads())
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


def gemv(x: Tensor, w: Tensor, b: Tensor | None, col_major: int) -> Tensor:
    """x [1, K] fp32 contiguous; w [N, K] fp32 in layout `col_major` (see `_layout`); b [N] -> [1, N]."""
    N, K = w.shape
    if x.shape != (1, K) or (b is not None and (b.shape != (N,) or not b.is_contiguous())):
        raise ValueError(f"gemv shapes: x {tuple(x.shape)}, w {tuple(w.shape)}, b {None if b is None else tuple(b.shape)}")
    y = torch.empty(1, N)
    _lib.jd_gemv(w.data_ptr(), x.data_ptr(), 0 if b is None else b.data_ptr(), y.data_ptr(), N, K, col_major)
    return y


_F32 = torch.float32


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """`F.linear`, with one-row fp32 CPU products on the pooled GEMV when it is enabled."""
    if (_threads and x.dim() == 2 and x.shape[0] == 1 and x.dtype is _F32 and isinstance(w, Tensor)
            and w.dtype is _F32 and x.device.type == "cpu" and w.device.type == "cpu"
            and x.is_contiguous() and (b is None or b.dtype is _F32)):
        layout = _layout(w)
        if layout is not None:
            return gemv(x, w, b, layout)
    return F.linear(x, w, b)


def _ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def mamba_step(w, xz: Tensor, window: Tensor, h0: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor] | None:
    """The Mamba mixer between in_proj and out_proj for one token (engine/mamba.py's math), or None
    when these tensors are not all fp32, CPU and in the layouts the C step reads."""
    E, N = w.A.shape
    R, K = w.dt_proj.shape[1], w.conv_w.shape[1]
    if not (_threads and xz.is_cpu and xz.dtype is _F32 and xz.shape == (1, 2 * E) and xz.is_contiguous()
            and window.dtype is _F32 and window.is_contiguous() and h0.dtype is _F32 and h0.is_contiguous()
            and w.conv_w.dtype is _F32 and w.x_proj.dtype is _F32 and w.dt_proj.dtype is _F32
            and w.dbc_norm.dtype is _F32 and _layout(w.x_proj) == 0 and _layout(w.dt_proj) == 0
            and (w.conv_b is None or w.conv_b.dtype is _F32)
            and all(t is None or t.is_contiguous() for t in (w.conv_b, w.dbc_norm, w.dt_bias, w.A, w.D))):
        return None
    y = torch.empty(1, E)
    window_out = torch.empty(K - 1, E)
    h = torch.empty(E, N)
    scratch = torch.empty(E + R + 2 * N)
    cw = w.conv_w
    _lib.jd_mamba_step(xz.data_ptr(), window.data_ptr(), cw.data_ptr(), cw.stride(0), cw.stride(1),
                       _ptr(w.conv_b), w.x_proj.data_ptr(), w.dbc_norm.data_ptr(), eps,
                       w.dt_proj.data_ptr(), w.dt_bias.data_ptr(), w.A.data_ptr(), w.D.data_ptr(),
                       h0.data_ptr(), E, N, R, K, y.data_ptr(), window_out.data_ptr(), h.data_ptr(),
                       scratch.data_ptr())
    return y, window_out, h
