"""RMSNorm as Jamba computes it: normalise in fp32, cast back, then scale."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rms_norm(x: Tensor, w: Tensor, eps: float) -> Tensor:
    """x [..., n]; w [n]. One fused op in fp32; half precision normalises in fp32 and rounds
    before the weight multiply, as transformers' JambaRMSNorm does."""
    if x.dtype == torch.float32 and w.dtype == torch.float32:
        return F.rms_norm(x, w.shape, w, eps)
    return w * F.rms_norm(x.float(), w.shape, None, eps).to(x.dtype)
