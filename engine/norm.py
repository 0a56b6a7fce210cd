"""RMSNorm as Jamba computes it: normalise in fp32, cast back, then scale."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from . import cpu_kernels


def rms_norm(x: Tensor, w: Tensor, eps: float) -> Tensor:
    """x [..., n]; w [n]. One fused op in fp32; half precision normalises in fp32 and rounds
    before the weight multiply, as transformers' JambaRMSNorm does."""
    if x.dtype == torch.float32 and w.dtype == torch.float32:
        if x.shape[0] == 1 and (y := cpu_kernels.rms_norm(x, w, eps)) is not None:
            return y                                                  # CPU decode: one C call
        return F.rms_norm(x, w.shape, w, eps)
    return w * F.rms_norm(x.float(), w.shape, None, eps).to(x.dtype)


@lru_cache(maxsize=16)
def _group_matrices(sizes: tuple[int, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """-> mean [S, g] (column j averages group j's entries), spread [g, S] (copies group j's value
    back to its entries); S = sum(sizes)."""
    spread = torch.block_diag(*[torch.ones(1, n) for n in sizes])                     # [g, S] (built on CPU)
    mean = (spread / torch.tensor(sizes, dtype=torch.float32)[:, None]).T.contiguous()
    return mean.to(device), spread.to(device)


def rms_norm_groups(x: Tensor, w: Tensor, sizes: tuple[int, ...], eps: float) -> Tensor:
    """x [T, S] holds g vectors end to end (lengths `sizes`), each RMS-normalised on its own, as
    `rms_norm` would, and scaled by its part of w [S]. Two tiny matmuls do all g reductions: a
    handful of ops instead of g norms' worth (decode runs this once per Mamba layer per token)."""
    mean, spread = _group_matrices(sizes, x.device)
    xf = x.float()
    inv = torch.rsqrt(torch.mm(xf * xf, mean).add_(eps))                              # [T, g]
    y = xf * torch.mm(inv, spread)                                                     # [T, S]
    return y * w if x.dtype == torch.float32 and w.dtype == torch.float32 else w * y.to(x.dtype)
