"""Jamba's Mamba-1 mixer as flat functions (CPU/torch path; a fused-kernel path can replace
`causal_conv` and `ssm_scan` one for one).

    x -> in_proj -> (xs, z) ; xs -> causal depthwise conv (K taps) -> SiLU
      -> x_proj -> (dt [R], B [N], C [N]) -> RMSNorm each ; dt -> dt_proj -> +bias -> softplus
      -> h_t = exp(dt_t A) h_{t-1} + dt_t B_t xs_t      (per channel e, state n; A = -exp(A_log))
      -> y_t = C_t . h_t + D xs_t ; y *= SiLU(z) -> out_proj
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import cpu_kernels, kernels
from .cpu_kernels import linear
from .norm import rms_norm_groups
from .threads import one_thread
from .weights import MambaWeights

# exp(v) is computed as exp2(v * log2 e): torch's fp32 CPU exp (MKL VML) wakes every thread even for an
# [E, N] tile: 10-60 us per call at 2 threads here and milliseconds on a busy machine, against 5-6 us
# for exp2, which is the plain vectorised kernel (same value to 1 ulp).
LOG2E = 1.4426950408889634


def causal_conv(x: Tensor, w: Tensor, b: Tensor | None, window: Tensor) -> tuple[Tensor, Tensor]:
    """Depthwise causal conv over time continuing from `window`.

    x [T, E]; w [E, K]; b [E]; window [K-1, E] (previous inputs) -> y [T, E], new window [K-1, E].
    """
    T, K = x.shape[0], w.shape[1]
    xp = torch.cat([window if window.dtype == x.dtype else window.to(x.dtype), x], 0)   # [T+K-1, E]
    if T == 1:                                                      # decode: one dot product per channel
        y = (xp * w.T).sum(0, keepdim=True)                         # [1, E]
        return (y.add_(b) if b is not None else y), xp[1:]
    y = xp[0:T] * w[:, 0]
    for k in range(1, K):
        y.addcmul_(xp[k:k + T], w[:, k])                           # y += x[t-K+1+k] * w[k]
    if b is not None:
        y += b
    return y, xp[T:].clone()                                         # last K-1 inputs


# Elements of one [block, N, E] fp32 tile of the scan (2 MiB; 64 tokens at E*N = 8192): best of
# 4..512-token tiles measured on the bench model (cache-resident yet few calls).
SCAN_BLOCK_ELEMS = 1 << 19


def _sequential_scan_(a: Tensor, u: Tensor, h0: Tensor) -> Tensor:
    """u_t <- a_t * u_{t-1} + u_t in place, u_{-1} = h0; a, u [n, ...]. Returns the last state."""
    u[0].addcmul_(a[0], h0)
    rows, decay = u.unbind(0), a.unbind(0)
    for t in range(1, u.shape[0]):
        rows[t].addcmul_(decay[t], rows[t - 1])
    return rows[-1]


def linear_scan_(a: Tensor, u: Tensor, h0: Tensor) -> Tensor:
    """The recurrence h_t = a_t h_{t-1} + u_t over dim 0, written into u; returns h_{n-1}.

    a, u [n, N, E]; h0 [N, E]. Two-level, so Python runs about 4 sqrt(n) steps, not n: blocks of
    m positions are scanned side by side from zero (m-1 steps over [n/m, N, E]), the carries
    between blocks follow from each block's last state and decay product (n/m small steps), and
    each block's carry is then decayed along the block and added (m steps). No cumprod: torch's
    cumprod along a middle dimension took as long as all the other steps together (measured).
    """
    n = u.shape[0]
    m = max(2, int(n ** 0.5))
    nb = n // m
    if nb < 2:
        return _sequential_scan_(a, u, h0)
    n0 = nb * m
    ub = u[:n0].unflatten(0, (nb, m))                               # [nb, m, N, E]
    ab = a[:n0].unflatten(0, (nb, m))
    decay = ab[:, 0].clone()                                        # prod of a over each block [nb, N, E]
    for j in range(1, m):                                           # every block from a zero state
        ub[:, j].addcmul_(ab[:, j], ub[:, j - 1])
        decay.mul_(ab[:, j])
    carry = torch.empty_like(decay)                                 # state entering each block [nb, N, E]
    c = h0
    for i in range(nb):
        carry[i] = c
        c = torch.addcmul(ub[i, -1], decay[i], c)                   # state leaving block i
    for j in range(m):                                              # + carry decayed to position j
        carry.mul_(ab[:, j])
        ub[:, j].add_(carry)
    return _sequential_scan_(a[n0:], u[n0:], c) if n0 < n else c


def ssm_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
             h0: Tensor) -> tuple[Tensor, Tensor]:
    """Selective scan from state h0 (all fp32).

    x, dt, z [T, E] (dt after softplus); A [E, N]; B, C [T, N]; D [E]; h0 [E, N]
    -> y [T, E], h_T [E, N]. h0 is not modified.

    Works in cache-sized tiles of Tb tokens laid out [Tb, N, E]: discretisation is vectorised
    over the tile, the recurrence is one fused in-place multiply-add per position over all
    N x E channels (`linear_scan_`: about 4 sqrt(Tb) Python steps per tile, not one per
    token), and C . h is a batched [1, N] @ [N, E] product. The tile loop runs on one thread.
    On fp32 CPU tensors with the C kernels built, `cpu_kernels.scan` (engine/csrc/scan.c) does
    the same in one call instead.
    """
    if (out := cpu_kernels.scan(x, dt, A, B, C, D, z, h0)) is not None:   # fp32 CPU: engine/csrc/scan.c
        return out
    T, E = x.shape
    N = A.shape[1]
    Tb = max(1, min(T, SCAN_BLOCK_ELEMS // (E * N)))
    A2 = (A * LOG2E).T.contiguous()                                 # [N, E]
    dtx = dt * x                                                    # [T, E]
    y = torch.empty(T, E, dtype=torch.float32, device=x.device)
    dA = torch.empty(Tb, N, E, dtype=torch.float32, device=x.device)
    hs = torch.empty_like(dA)
    h = h0.T                                                        # [N, E]
    with one_thread(x.device.type == "cpu"):                        # tile-sized ops: no thread team
        for s in range(0, T, Tb):
            n = min(Tb, T - s)
            a, b = dA[:n], hs[:n]
            torch.mul(dt[s:s + n, None, :], A2, out=a).exp2_()      # exp(dt_t A)      [n, N, E]
            torch.mul(B[s:s + n, :, None], dtx[s:s + n, None, :], out=b)   # dt_t B_t x_t [n, N, E]
            linear_scan_(a, b, h)                                   # b <- h_t     [n, N, E]
            torch.bmm(C[s:s + n, None, :], b, out=y[s:s + n, None, :])  # C_t . h_t [n, 1, E]
            h = b[n - 1].clone()                                    # the tile buffers are reused
    y = torch.addcmul(y, x, D) * F.silu(z)
    return y, h.T.contiguous()


def ssm_step(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
             h0: Tensor) -> tuple[Tensor, Tensor]:
    """One-token scan: x, dt, z [1, E]; B, C [1, N] -> y [1, E], h [E, N]."""
    h = torch.addcmul((dt * x).mT * B, torch.exp2(dt.mT * (A * LOG2E)), h0)   # [E, N]
    y = (h @ C.mT).mT                                               # [1, E]
    return torch.addcmul(y, x, D) * F.silu(z), h


def mamba_mixer(w: MambaWeights, x: Tensor, window: Tensor, h0: Tensor, eps: float,
                ) -> tuple[Tensor, Tensor, Tensor]:
    """x [T, D] -> y [T, D], new conv window [K-1, E], new SSM state [E, N] (fp32)."""
    E, R, N = w.A.shape[0], w.dt_proj.shape[1], w.A.shape[1]
    xz = linear(x, w.in_proj, w.in_proj_bias)                       # [T, 2E]
    if x.shape[0] == 1 and (fused := cpu_kernels.mamba_step(w, xz, window, h0, eps)) is not None:
        y, window, h = fused                                        # CPU decode: one C call
        return linear(y, w.out_proj, w.out_proj_bias), window, h
    xs, z = xz[:, :E], xz[:, E:]
    ks = kernels.select(x.device)                                   # torch ops or fused kernels
    xs, window = ks.conv(xs, w.conv_w, w.conv_b, window)
    xs = F.silu(xs, inplace=True)                                   # [T, E] (a fresh conv output)
    dbc = linear(xs, w.x_proj)                                      # [T, R+2N]
    dbc = rms_norm_groups(dbc, w.dbc_norm, (R, N, N), eps)          # dt, B, C each normalised
    dt, B, C = dbc[:, :R], dbc[:, R:R + N].float(), dbc[:, R + N:].float()   # [T, R], [T, N], [T, N]
    if dt.dtype == w.dt_bias.dtype:                                 # fp32: the bias inside the matmul
        dt = F.softplus(linear(dt, w.dt_proj, w.dt_bias))           # [T, E] fp32
    else:
        dt = F.softplus(linear(dt, w.dt_proj).float() + w.dt_bias)
    scan = ks.step if x.shape[0] == 1 else ks.scan
    y, h = scan(xs.float(), dt, w.A, B, C, w.D, z.float(), h0)
    return linear(y.to(x.dtype), w.out_proj, w.out_proj_bias), window, h
