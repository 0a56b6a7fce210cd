"""Weight containers: one small dataclass per block, plain tensors inside (no nn.Module).

Shapes are the checkpoint's [out, in]; on CPU the loader may store a matrix column-major (a
transposed view of an [in, out] buffer), see `checkpoint.gemv_layout`. `F.linear` takes either.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class MambaWeights:
    in_proj: Tensor            # [2E, D]
    in_proj_bias: Tensor | None
    conv_w: Tensor             # [E, K]   depthwise causal conv taps (column-major on CPU)
    conv_b: Tensor | None      # [E]
    x_proj: Tensor             # [R + 2N, E]
    dt_proj: Tensor            # [E, R]
    dt_bias: Tensor            # [E]      fp32
    A: Tensor                  # [E, N]   fp32, = -exp(A_log)
    D: Tensor                  # [E]      fp32
    out_proj: Tensor           # [D, E]
    out_proj_bias: Tensor | None
    dbc_norm: Tensor           # [R + 2N] the dt, B and C RMSNorm weights, end to end (as x_proj's rows)


@dataclass
class AttentionWeights:
    qkv: Tensor                # [(H + 2G) Hd, D]  q_proj, k_proj, v_proj rows: one matmul for all three
    o: Tensor                  # [D, H*Hd]


@dataclass
class MLPWeights:
    gate_up: Tensor            # [2I, D]  gate_proj rows, then up_proj rows: one matmul for both
    down: Tensor               # [D, I]


@dataclass
class MoEWeights:
    router: Tensor             # [X, D]
    experts: list[MLPWeights]
    top_k: int


@dataclass
class LayerWeights:
    input_norm: Tensor         # [D]
    mixer: MambaWeights | AttentionWeights
    pre_ff_norm: Tensor        # [D]
    ffn: MLPWeights | MoEWeights


@dataclass
class ModelWeights:
    embed: Tensor              # [V, D]
    layers: list[LayerWeights]
    final_norm: Tensor         # [D]
    lm_head: Tensor            # [V, D]
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
