"""Causal grouped-query attention with no positional encoding (Jamba's attention layers)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.bias import causal_lower_right

from . import cpu_kernels, kernels
from .cpu_kernels import linear
from .state import KVRows
from .threads import one_thread
from .weights import AttentionWeights


# SDPA's CPU flash kernel, which also returns the log-sum-exp of each query's scores (private aten op;
# the public API hides the lse). None where this torch lacks it: then the masked call below is used.
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


# Decode attends on one thread while K holds at most this many elements (8K keys at G 2, Hd 32): a
# thread team's wake-up costs more than it saves below that (bench/attention.py, 2 threads vs 1:
# 512 keys 0.15 vs 0.05 ms, 8K 0.47 vs 0.36 ms, 64K 4.4 vs 5.8 ms).
ONE_THREAD_DECODE_KV = 1 << 19


def _fold(q: Tensor, G: int) -> Tensor:
    """q [H, T, Hd] -> [1, G, (H/G) T, Hd]: the H/G query heads sharing a K/V head become extra
    query rows of that head (heads h = g H/G ... of group g, as in GQA). Valid only where no
    causal mask applies (decode, and a continuation's past keys): every row then sees the same
    keys. SDPA then reads each K/V head once instead of expanding it H/G times."""
    H, T, Hd = q.shape
    return q.reshape(1, G, (H // G) * T, Hd)


def attend(q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
    """q [H, T, Hd]; k, v [G, past+T, Hd] -> [H, T, Hd]; query t sees keys 0..past+t.

    4-D inputs and `is_causal` / a lower-right causal bias keep SDPA on its flash kernel on CPU;
    3-D inputs or a boolean mask with GQA fall back to the math kernel, which materialises
    [H, T, L] scores. A continuation on CPU is split into the unmasked past keys and the causal
    diagonal block, merged by their log-sum-exps: the same softmax, ~1.5x faster than one masked
    call at 16K keys (156 vs 239 ms for 1024 queries, measured).
    """
    (H, T, _), (G, L, _) = q.shape, k.shape
    if T > 1 and (out := cpu_kernels.attend(q, k, v, past)) is not None:   # fp32 CPU: engine/csrc/attention.c
        return out
    if T == 1 and (out := cpu_kernels.decode_attend(q, k, v)) is not None:  # engine/csrc/decode_attention.c
        return out
    scale = q.shape[-1] ** -0.5
    q4, k4, v4 = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)     # [1, H|G, T|L, Hd]
    if T == 1:                                                       # decode: sees every key
        with one_thread(q.device.type == "cpu" and k.numel() <= ONE_THREAD_DECODE_KV):
            out = F.scaled_dot_product_attention(_fold(q, G), k4, v4, scale=scale).reshape(1, H, 1, -1)
    elif past == 0:
        out = F.scaled_dot_product_attention(q4, k4, v4, is_causal=True, scale=scale, enable_gqa=True)
    elif _FLASH_CPU is not None and q.device.type == "cpu":
        o1, l1 = _FLASH_CPU(_fold(q, G), k4[:, :, :past], v4[:, :, :past], 0.0, False, scale=scale)  # past keys
        o1, l1 = o1.reshape(1, H, T, -1), l1.reshape(1, H, T)             # unfold the query heads
        o2, l2 = _FLASH_CPU(q4, k4[:, :, past:], v4[:, :, past:], 0.0, True, scale=scale)    # diagonal
        lse = torch.logaddexp(l1, l2)                                # [1, H, T]
        out = (o1.float() * torch.exp(l1 - lse).unsqueeze(-1)
               + o2.float() * torch.exp(l2 - lse).unsqueeze(-1)).to(q.dtype)
    else:
        return attend_masked(q, k, v, past)
    return out.squeeze(0)


def attend_masked(q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
    """A continuation (past > 0) in one SDPA call with the lower-right causal bias: what `attend`
    runs off CPU (CUDA's flash / memory-efficient kernels take the bias) and on a torch without
    the CPU flash op. q [H, T, Hd]; k, v [G, past+T, Hd] -> [H, T, Hd]."""
    T, L = q.shape[1], k.shape[1]
    out = F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                         attn_mask=causal_lower_right(T, L), scale=q.shape[-1] ** -0.5,
                                         enable_gqa=True)
    return out.squeeze(0)


def attention_mixer(w: AttentionWeights, x: Tensor, rows: KVRows, n_heads: int, n_kv: int,
                    head_dim: int) -> tuple[Tensor, KVRows]:
    """x [T, D] -> y [T, D], rows extended by T tokens."""
    T = x.shape[0]
    qkv = linear(x, w.qkv).view(T, n_heads + 2 * n_kv, head_dim).transpose(0, 1)     # [H+2G, T, Hd]
    q, k, v = qkv.split([n_heads, n_kv, n_kv])                        # [H, T, Hd], [G, T, Hd] x2
    past = rows.length
    rows = rows.append(k, v)
    out = kernels.select(x.device).attend(q, rows.k, rows.v, past)      # [H, T, Hd]
    return linear(out.transpose(0, 1).reshape(T, n_heads * head_dim), w.o), rows
