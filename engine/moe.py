"""Dense SwiGLU MLP and Jamba's mixture of experts (softmax router, top-k, weights not renormalised)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import cpu_kernels
from .cpu_kernels import linear
from .weights import MLPWeights, MoEWeights


def mlp(w: MLPWeights, x: Tensor) -> Tensor:
    """x [T, D] -> [T, D]: down(silu(gate x) * up x)."""
    if x.shape[0] == 1 and (y := cpu_kernels.mlp(w, x)) is not None:
        return y                                                      # CPU decode: one C call
    gate, up = linear(x, w.gate_up).chunk(2, dim=-1)                # [T, I] each
    return linear(F.silu(gate).mul_(up), w.down)


def route(router: Tensor, x: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """x [T, D] -> weights [T, k] (softmax probs of the chosen experts, model dtype), experts [T, k]."""
    probs = torch.softmax(linear(x, router).float(), dim=-1)       # [T, X]
    weights, experts = torch.topk(probs, top_k, dim=-1)
    return weights.to(x.dtype), experts


def moe(w: MoEWeights, x: Tensor) -> Tensor:
    """x [T, D] -> [T, D]: sum over the k chosen experts of weight * expert(x)."""
    T = x.shape[0]
    if T == 1 and (y := cpu_kernels.moe(w, x)) is not None:
        return y                                                      # CPU decode: one C call
    weights, experts = route(w.router, x, w.top_k)
    if T == 1:                                                        # decode: no gather/scatter
        (w0, *ws), (e0, *es) = weights[0].tolist(), experts[0].tolist()
        out = mlp(w.experts[e0], x) * w0
        for wt, e in zip(ws, es):
            out.add_(mlp(w.experts[e], x), alpha=wt)
        return out
    k = w.top_k
    flat = experts.flatten()                                          # [T*k] slot -> expert
    order = torch.argsort(flat, stable=True)                          # slots grouped by expert
    counts = torch.bincount(flat, minlength=len(w.experts)).tolist()
    xs = x[order // k]                                                # [T*k, D] token of each slot
    ys = torch.empty_like(xs)
    start = 0
    for e, n in enumerate(counts):
        if n:
            ys[start:start + n] = mlp(w.experts[e], xs[start:start + n])
            start += n
    per_slot = torch.empty_like(ys)
    per_slot[order] = ys                                              # back to slot order [T*k, D]
    # sum over each token's k slots, weighted; a gather + reduce instead of a scatter-add
    return torch.bmm(weights.unsqueeze(1), per_slot.view(T, k, -1)).squeeze(1)   # [T, D]


def feed_forward(w: MLPWeights | MoEWeights, x: Tensor) -> Tensor:
    return moe(w, x) if isinstance(w, MoEWeights) else mlp(w, x)
