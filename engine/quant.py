"""ExpertsInt8: optional load-time int8 weights for the MoE experts and the dense MLPs.

Each weight W [out, in] becomes q = round(W / s) in int8 with one symmetric scale per output
channel, s = max|W[o, :]| / 127 (fp32). Activations stay in the model dtype: a linear layer
converts q to that dtype per call (exact: |q| <= 127 fits bf16/fp16/fp32) and scales the output,

    y = x @ (q * s)^T = (x @ q^T) * s          x [T, in] -> y [T, out]

so the stored weights take 1 byte per element (+ 4 bytes per output channel) instead of 2 or 4.
`Int8Weight` answers `F.linear` through torch's `__torch_function__` protocol, so engine/moe.py
calls it exactly like a tensor. Routers, attention, Mamba mixers, embeddings and lm_head keep their dtype.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import Cancelled, EngineError
from .weights import LayerWeights, MLPWeights, ModelWeights, MoEWeights

METHODS = ("int8",)


@dataclass(frozen=True)
class Int8Weight:
    """A linear weight [out, in] stored as int8 with per-output-channel fp32 scales."""
    q: Tensor          # [out, in] int8
    scale: Tensor      # [out] fp32

    @staticmethod
    def quantize(w: Tensor) -> "Int8Weight":
        wf = w.detach().float()                                          # [out, in]
        amax = wf.abs().amax(dim=1)                                      # [out]
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        q = torch.round(wf / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        return Int8Weight(q, scale)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return (self.q.float() * self.scale[:, None]).to(dtype)          # [out, in]

    def to(self, device: torch.device | str) -> "Int8Weight":
        return Int8Weight(self.q.to(device), self.scale.to(device))

    @property
    def shape(self) -> torch.Size:
        return self.q.shape

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def nbytes(self) -> int:
        return self.q.numel() * self.q.element_size() + self.scale.numel() * self.scale.element_size()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            return int8_linear(*args, **kwargs)
        raise TypeError(f"Int8Weight supports only F.linear, not {getattr(func, '__name__', func)}")


def int8_linear(x: Tensor, weight: Int8Weight, bias: Tensor | None = None) -> Tensor:
    """x [..., in] -> [..., out] in x's dtype: the int8 weight converted for one ordinary matmul, the
    output scaled per channel. (torch's weight-only int8 GEMV, `_weight_int8pack_mm`, measured slower
    on CPU even for one row; see docs/engine-gpu.md.)"""
    y = F.linear(x, weight.q.to(x.dtype)) * weight.scale.to(x.dtype)
    return y if bias is None else y + bias


# -- whole models ---------------------------------------------------------------------------------

def _quantize_mlp(w: MLPWeights, device: torch.device, cancel: threading.Event | None = None) -> MLPWeights:
    if cancel is not None and cancel.is_set():
        raise Cancelled("quantizing the checkpoint was stopped")
    return MLPWeights(*(Int8Weight.quantize(t).to(device) for t in (w.gate_up, w.down)))


def _move(obj, device: torch.device):
    """Tensors (inside dataclasses and lists) moved to `device`."""
    if isinstance(obj, (Tensor, Int8Weight)):
        return obj.to(device)
    if isinstance(obj, list):
        return [_move(o, device) for o in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _move(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init and f.name != "device"})
    return obj


def quantize_weights(weights: ModelWeights, method: str = "int8", device: torch.device | str | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None) -> ModelWeights:
    """New ModelWeights with every expert / dense MLP weight in int8, all on `device` (default: where
    they are). Load on CPU and quantize there to never hold the full-precision FFNs on a GPU.
    `progress(done, total)` after each layer; `cancel` set: Cancelled before the next MLP."""
    if method not in METHODS:
        raise EngineError(f"unknown quantization {method!r}; use one of {METHODS} or None")
    device = torch.device(device) if device is not None else weights.device
    layers = []
    for layer in weights.layers:
        ffn = layer.ffn
        if isinstance(ffn, MoEWeights):
            ffn = MoEWeights(router=ffn.router.to(device),
                             experts=[_quantize_mlp(e, device, cancel) for e in ffn.experts], top_k=ffn.top_k)
        else:
            ffn = _quantize_mlp(ffn, device, cancel)
        layers.append(LayerWeights(input_norm=layer.input_norm.to(device), mixer=_move(layer.mixer, device),
                                   pre_ff_norm=layer.pre_ff_norm.to(device), ffn=ffn))
        if progress is not None:
            progress(len(layers), len(weights.layers))
    embed = weights.embed.to(device)
    lm_head = embed if weights.lm_head is weights.embed else weights.lm_head.to(device)
    return ModelWeights(embed=embed, layers=layers, final_norm=weights.final_norm.to(device), lm_head=lm_head,
                        dtype=weights.dtype, device=device)


def ffn_weight_bytes(weights: ModelWeights) -> int:
    """Bytes held by the expert and dense-MLP weights (int8 values + scales when quantized)."""
    total = 0
    for layer in weights.layers:
        mlps = layer.ffn.experts if isinstance(layer.ffn, MoEWeights) else [layer.ffn]
        for m in mlps:
            for t in (m.gate_up, m.down):
                total += t.nbytes if isinstance(t, Int8Weight) else t.numel() * t.element_size()
    return total
