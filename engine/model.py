"""The Jamba forward pass over one chunk of tokens, continuing from a HybridState (gpt-fast style:
flat functions over plain tensors)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention import attention_mixer
from .config import JambaConfig
from .cpu_kernels import linear
from .errors import Cancelled, EngineError  # noqa: F401 -- Cancelled: imported from here too
from .mamba import mamba_mixer
from .moe import feed_forward
from .norm import rms_norm
from .state import HybridState
from .weights import AttentionWeights, ModelWeights


# K/V rows a prefill that has to copy its K/V into a new buffer leaves spare for the answer: without
# them the first decode step copies the whole K/V once more (after 65K tokens on the bench model,
# one thread: that step 30-43 ms without them, 11-18 ms with).
DECODE_ROOM = 256


def forward_chunk(cfg: JambaConfig, w: ModelWeights, ids: Tensor, state: HybridState,
                  logits: str) -> tuple[Tensor | None, HybridState]:
    """ids [T] -> logits ([T, V] "all", [1, V] "last", None "none"; fp32) and the state after them."""
    x = F.embedding(ids, w.embed)                                       # [T, D]
    conv, ssm, kv = dict(state.conv), dict(state.ssm), dict(state.kv)
    eps = cfg.rms_norm_eps
    for i, layer in enumerate(w.layers):
        h = rms_norm(x, layer.input_norm, eps)
        if isinstance(layer.mixer, AttentionWeights):
            h, kv[i] = attention_mixer(layer.mixer, h, kv[i], cfg.num_attention_heads,
                                       cfg.num_key_value_heads, cfg.head_dim)
        else:
            h, conv[i], ssm[i] = mamba_mixer(layer.mixer, h, conv[i], ssm[i], eps)
        x += h                                                          # x is this pass's own tensor
        x += feed_forward(layer.ffn, rms_norm(x, layer.pre_ff_norm, eps))
    new_state = HybridState(state.n_tokens + ids.shape[0], conv, ssm, kv, state.offset, state.fingerprint)
    if logits == "none":
        return None, new_state
    if logits == "last":
        x = x[-1:]
    return linear(rms_norm(x, w.final_norm, eps), w.lm_head).float(), new_state


def prefill(cfg: JambaConfig, w: ModelWeights, ids: Tensor, state: HybridState, logits: str = "all",
            chunk_size: int = 1024, progress: Callable[[int, int], None] | None = None,
            cancel=None, room: int = DECODE_ROOM) -> tuple[Tensor | None, HybridState]:
    """Run ids [T] in chunks of `chunk_size` from `state` (unchanged). Peak activation memory is
    bounded by the chunk; K/V rows for all T tokens are reserved once up front, with `room` rows to
    spare for what will follow (within the context) when a new buffer has to be made."""
    if logits not in ("all", "last", "none"):
        raise ValueError(f"logits must be 'all', 'last' or 'none', not {logits!r}")
    if state.offset != 0:
        raise EngineError(f"cannot continue from a partial state (K/V rows start at {state.offset}); join it first")
    T = ids.shape[0]
    if state.n_tokens + T > cfg.max_position_embeddings:
        raise EngineError(f"{state.n_tokens + T} tokens exceed the model's context of {cfg.max_position_embeddings}")
    if T == 0:
        return (torch.empty(0, cfg.vocab_size, device=ids.device) if logits == "all" else None), state
    room = max(0, min(room, cfg.max_position_embeddings - state.n_tokens - T))
    state = HybridState(state.n_tokens, state.conv, state.ssm,
                        {i: r.reserve(T, room) for i, r in state.kv.items()}, 0, state.fingerprint)
    outs = []
    for start in range(0, T, chunk_size):
        if cancel is not None and cancel.is_set():
            raise Cancelled("prefill cancelled")
        end = min(T, start + chunk_size)
        mode = logits if logits == "all" else ("last" if logits == "last" and end == T else "none")
        out, state = forward_chunk(cfg, w, ids[start:end], state, mode)
        if out is not None:
            outs.append(out)
        if progress is not None:
            progress(end, T)
    if logits == "none":
        return None, state
    return (torch.cat(outs) if len(outs) > 1 else outs[0]), state
