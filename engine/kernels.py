"""Kernel selection: fused CUDA kernels when they are installed, the torch functions otherwise.

Every op has the signature of the torch path it replaces (engine/mamba.py, engine/attention.py):

    conv(x [T, E], w [E, K], b [E] | None, window [K-1, E]) -> y [T, E], window [K-1, E]   (before SiLU)
    scan(x, dt, A, B, C, D, z, h0) -> y [T, E], h [E, N]      x, dt, z [T, E]; B, C [T, N]; A, h0 [E, N]
    step(...)                       the same for T == 1 (decode)
    attend(q [H, T, Hd], k, v [G, L, Hd], past) -> [H, T, Hd]  query t sees keys 0..past+t

On CUDA the fused ops wrap, by their documented signatures:
    causal_conv1d.causal_conv1d_fn(x (b, E, L), weight (E, K), bias, activation=None)
    causal_conv1d.causal_conv1d_update(x (b, E, 1), conv_state (b, E, K-1) in place, weight, bias, activation=None)
    mamba_ssm...selective_scan_fn(u, delta (b, E, L), A (E, N), B, C (b, N, L), D, z, delta_bias,
                                  delta_softplus, return_last_state)   -- always starts from h = 0
    mamba_ssm...selective_state_update(state (b, E, N) in place, x, dt (b, E), A, B, C (b, N), D, z,
                                       dt_bias, dt_softplus)
and attention is `attention.attend` on every device: 4-D SDPA (flash / memory-efficient kernels need
4-D inputs), GQA query heads folded into rows for decode, the lower-right causal bias when continuing.

Continuation stays exact although selective_scan_fn has no initial state: the decay is diagonal, so
the contribution of h0 is added afterwards (`add_initial_state`, also run and tested on CPU).
The conv continues its window by prepending the saved K-1 inputs and dropping their outputs.

`select(device)` picks the set once per device type; `JAMBADOCS_KERNELS=torch` forces the torch path.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

# Largest [block, E, N] fp32 tensor the initial-state correction materialises at once (elements).
_CORRECTION_BLOCK_ELEMS = 1 << 24
# Widths the causal-conv1d kernels are compiled for.
_FUSED_CONV_WIDTHS = (2, 3, 4)


@dataclass(frozen=True)
class KernelSet:
    """The ops the forward pass calls, and what each one runs (`names`, reported by `Engine.kernels`)."""
    conv: Callable[..., tuple[Tensor, Tensor]]
    scan: Callable[..., tuple[Tensor, Tensor]]
    step: Callable[..., tuple[Tensor, Tensor]]
    attend: Callable[[Tensor, Tensor, Tensor, int], Tensor]
    names: dict[str, str] = field(default_factory=dict)


# -- shared math (CPU and GPU) ------------------------------------------------------------------

def add_initial_state(y: Tensor, h_last: Tensor, dt: Tensor, A: Tensor, C: Tensor, z: Tensor | None,
                      h0: Tensor) -> tuple[Tensor, Tensor]:
    """Turn a scan that started from h = 0 into the scan that started from h0, exactly.

    y [T, E] (gated output of the zero-start scan), h_last [E, N]; dt, z [T, E] (dt after softplus);
    A, h0 [E, N]; C [T, N]; all fp32. With P_t = prod_{s<=t} exp(dt_s A) = exp(A * sum_{s<=t} dt_s):
        h_t = h'_t + P_t * h0        y_t += silu(z_t) * (C_t . (P_t * h0))        h_T = h'_T + P_T * h0
    The [T, E, N] decays are made in blocks to bound memory.
    """
    T, E = dt.shape
    N = A.shape[1]
    S = torch.cumsum(dt, dim=0)                                      # [T, E]  sum_{s<=t} dt_s
    extra = torch.empty_like(y)                                      # [T, E]  C_t . (P_t h0)
    block = max(1, _CORRECTION_BLOCK_ELEMS // max(1, E * N))
    for i in range(0, T, block):
        P = torch.exp(S[i:i + block, :, None] * A)                  # [b, E, N]
        extra[i:i + block] = torch.bmm(P.mul_(h0), C[i:i + block, :, None]).squeeze(-1)   # [b, E]
    if z is not None:
        extra.mul_(F.silu(z))
    h = torch.addcmul(h_last, torch.exp(S[-1, :, None] * A), h0)    # [E, N]
    return y + extra, h


def window_conv(conv_full: Callable[[Tensor], Tensor], x: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """Continue a causal conv from `window` with a conv that starts from zero padding.

    conv_full(xp [T+K-1, E]) -> [T+K-1, E]; the first K-1 outputs (of the prepended window) are
    dropped, so every kept output sees exactly the K inputs it would in one long pass.
    x [T, E]; window [K-1, E] -> y [T, E], new window [K-1, E] (the last K-1 inputs).
    """
    Km1 = window.shape[0]
    xp = torch.cat([window.to(x.dtype), x], 0)                      # [T+K-1, E]
    return conv_full(xp)[Km1:], xp[xp.shape[0] - Km1:].clone()


# -- wrappers around the fused kernels ------------------------------------------------------------

def fused_kernels(selective_scan_fn: Callable | None = None, selective_state_update: Callable | None = None,
                  causal_conv1d_fn: Callable | None = None, causal_conv1d_update: Callable | None = None,
                  attend: Callable | None = None, label: str = "") -> KernelSet:
    """A KernelSet calling the given kernels (documented mamba-ssm / causal-conv1d signatures); each one
    left None keeps its torch op. `label` overrides the reported names (tests pass stand-ins)."""
    base = torch_kernels()
    names = dict(base.names)
    conv, scan, step = base.conv, base.scan, base.step

    if causal_conv1d_fn is not None:
        def conv(x: Tensor, w: Tensor, b: Tensor | None, window: Tensor) -> tuple[Tensor, Tensor]:
            if w.shape[1] not in _FUSED_CONV_WIDTHS:
                return base.conv(x, w, b, window)
            if x.shape[0] == 1 and causal_conv1d_update is not None:
                # a copy, always: for K = 2 the [1, E, 1] view of `window` already counts as contiguous,
                # and .contiguous() would hand the saved state itself to the in-place kernel
                state = window.to(x.dtype).T.unsqueeze(0).clone(memory_format=torch.contiguous_format)  # [1, E, K-1]
                y = causal_conv1d_update(x.T.unsqueeze(0).contiguous(), state, w, b, activation=None)
                return y.reshape(1, -1), state[0].T.contiguous()                     # [1, E], [K-1, E]

            def full(xp: Tensor) -> Tensor:                                           # xp [T+K-1, E]
                y = causal_conv1d_fn(xp.T.unsqueeze(0).contiguous(), w, b, activation=None)   # [1, E, T+K-1]
                return y[0].T
            return window_conv(full, x, window)
        names["conv"] = label or "causal_conv1d"

    if selective_scan_fn is not None:
        def scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                 h0: Tensor) -> tuple[Tensor, Tensor]:
            def cl(t: Tensor) -> Tensor:                                              # [T, c] -> [1, c, T]
                return t.T.unsqueeze(0).contiguous()
            y, h = selective_scan_fn(cl(x), cl(dt), A, cl(B), cl(C), D=D, z=cl(z), delta_bias=None,
                                     delta_softplus=False, return_last_state=True)   # [1, E, T], [1, E, N]
            return add_initial_state(y[0].T.float(), h[0].float(), dt, A, C, z, h0)
        names["scan"] = label or "mamba_ssm"

    if selective_state_update is not None:
        def step(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                 h0: Tensor) -> tuple[Tensor, Tensor]:
            state = h0.unsqueeze(0).clone()                                           # [1, E, N], updated in place
            # dt is already softplus(dt + bias); a zero bias, not None: mamba-ssm's wrapper (every release
            # through 2.3.x) passes `*(dt_bias.stride(0), dt_bias.stride(1)) if dt_bias is not None else 0`
            # to the Triton launch, which raises TypeError when dt_bias is None
            y = selective_state_update(state, x, dt, A, B, C, D=D, z=z, dt_bias=torch.zeros_like(D),
                                       dt_softplus=False)
            return y.float(), state[0]                                                # [1, E], [E, N]
        names["step"] = label or "mamba_ssm"

    if attend is not None:
        names["attention"] = label or getattr(attend, "__name__", "custom")
    return KernelSet(conv, scan, step, attend or base.attend, names)


def torch_kernels() -> KernelSet:
    """The torch path: the functions of engine/mamba.py and engine/attention.py themselves."""
    from . import attention, mamba                                   # they import this module
    return KernelSet(mamba.causal_conv, mamba.ssm_scan, mamba.ssm_step, attention.attend,
                     {"conv": "torch", "scan": "torch", "step": "torch", "attention": "sdpa"})


def installed_kernels() -> dict[str, Callable]:
    """The fused kernels that import here ({} without CUDA builds of mamba-ssm / causal-conv1d)."""
    found: dict[str, Callable] = {}
    try:
        from causal_conv1d import causal_conv1d_fn, causal_conv1d_update
        found.update(causal_conv1d_fn=causal_conv1d_fn, causal_conv1d_update=causal_conv1d_update)
    except Exception as e:                               # not installed, or built for another torch/CUDA
        log.info("causal-conv1d not usable (%s): torch conv", e)
    try:
        from mamba_ssm.ops import selective_scan_interface as ssi
        # mamba-ssm main (after 2.3.2.post1) imports without its CUDA extension, which a default install
        # no longer builds (MAMBA_KEEP_CUDA_BUILD=TRUE), and raises RuntimeError only when called
        if getattr(ssi, "selective_scan_cuda", True) is None:
            raise ImportError("selective_scan_cuda is not built")
        found["selective_scan_fn"] = ssi.selective_scan_fn
    except Exception as e:
        log.info("mamba-ssm selective scan not usable (%s): torch scan", e)
    try:
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        found["selective_state_update"] = selective_state_update
    except Exception as e:
        log.info("mamba-ssm selective_state_update not usable (%s): torch step", e)
    return found


# -- selection ----------------------------------------------------------------------------------

_selected: dict[str, KernelSet] = {}
_override: KernelSet | None = None
_lock = threading.Lock()


def select(device: torch.device | str) -> KernelSet:
    """The KernelSet for tensors on `device` (cached per device type)."""
    if _override is not None:
        return _override
    kind = torch.device(device).type
    ks = _selected.get(kind)
    if ks is None:
        with _lock:
            ks = _selected.get(kind)
            if ks is None:
                ks = _selected[kind] = _choose(kind)
    return ks


def _choose(kind: str) -> KernelSet:
    if kind != "cuda" or os.environ.get("JAMBADOCS_KERNELS", "auto").lower() == "torch":
        return torch_kernels()
    ks = fused_kernels(**installed_kernels())                       # attention: attention.attend, as on CPU
    log.info("engine kernels on cuda: %s", ks.names)
    return ks


@contextmanager
def override(kernels: KernelSet) -> Iterator[KernelSet]:
    """Use `kernels` for every device inside the block (tests run the fused wrappers on CPU this way)."""
    global _override
    previous, _override = _override, kernels
    try:
        yield kernels
    finally:
        _override = previous
