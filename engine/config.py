"""`JambaConfig`: the fields of a Jamba `config.json` that the engine uses, plus derived sizes.

Glossary (mamba-minimal style), used in shape comments across the engine:
    T  tokens in the current chunk         D  hidden_size            V  vocab_size
    E  d_inner = mamba_expand * D           N  mamba_d_state          K  mamba_d_conv
    R  dt_rank                              H  attention heads        G  key/value heads
    Hd head_dim                             I  intermediate_size      X  experts
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError


_POSITIVE = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
             "attn_layer_period", "expert_layer_period", "mamba_d_state", "mamba_d_conv", "mamba_expand",
             "max_position_embeddings")
_NON_NEGATIVE = ("num_hidden_layers", "num_experts", "num_experts_per_tok")
_OFFSETS = ("attn_layer_offset", "expert_layer_offset")      # a negative one: no layer of that kind
_FLAGS = ("mamba_conv_bias", "mamba_proj_bias", "tie_word_embeddings")
_SILU = ("silu", "swish")      # transformers' ACT2FN: both are SiLU


@dataclass(frozen=True)
class JambaConfig:
    vocab_size: int = 65536
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 8
    head_dim: int | None = None
    attn_layer_period: int = 8
    attn_layer_offset: int = 4
    expert_layer_period: int = 2
    expert_layer_offset: int = 1
    num_experts: int = 16
    num_experts_per_tok: int = 2
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 2
    mamba_dt_rank: int | str = "auto"
    mamba_conv_bias: bool = True
    mamba_proj_bias: bool = False
    rms_norm_eps: float = 1e-6
    hidden_act: str = "silu"
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 262144
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if problems := self._type_problems():      # before anything divides by a size
            raise ValueError("; ".join(problems))
        if self.mamba_dt_rank == "auto":
            object.__setattr__(self, "mamba_dt_rank", math.ceil(self.hidden_size / 16))
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        problems = []
        if self.attn_layer_offset >= self.attn_layer_period:
            problems.append("attn_layer_offset must be < attn_layer_period")
        if self.expert_layer_offset >= self.expert_layer_period:
            problems.append("expert_layer_offset must be < expert_layer_period")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append("num_attention_heads must be a multiple of num_key_value_heads")
        moe = any(map(self.is_moe, range(self.num_hidden_layers)))     # no MoE layer: top-k is never used
        if moe and not 1 <= self.num_experts_per_tok <= self.num_experts:
            problems.append("num_experts_per_tok must be in [1, num_experts]")
        if self.hidden_act not in _SILU:
            problems.append(f"hidden_act {self.hidden_act!r} is not supported (only silu, or swish: the same function)")
        if self.pad_token_id is not None and not -self.vocab_size <= self.pad_token_id < self.vocab_size:
            # an embedding's padding_idx may count from the end (-1: the last row), as in torch
            problems.append(f"pad_token_id {self.pad_token_id} is outside the vocabulary (vocab_size {self.vocab_size})")
        if problems:
            raise ValueError("; ".join(problems))

    def _type_problems(self) -> list[str]:
        """Each field of the wrong type or range, by name (as transformers' strict JambaConfig types them)."""
        def integer(v: Any, least: int | None) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and (least is None or v >= least)

        checks = [(n, 1) for n in _POSITIVE] + [(n, 0) for n in _NON_NEGATIVE] + [(n, None) for n in _OFFSETS]
        problems = [f"{n} must be an integer{'' if least is None else f' >= {least}'}, not {getattr(self, n)!r}"
                    for n, least in checks if not integer(getattr(self, n), least)]
        problems += [f"{n} must be true or false, not {getattr(self, n)!r}" for n in _FLAGS
                     if not isinstance(getattr(self, n), bool)]
        if not (self.mamba_dt_rank == "auto" or integer(self.mamba_dt_rank, 1)):
            problems.append(f"mamba_dt_rank must be 'auto' or an integer >= 1, not {self.mamba_dt_rank!r}")
        if not (self.head_dim is None or integer(self.head_dim, 1)):
            problems.append(f"head_dim must be an integer >= 1, not {self.head_dim!r}")
        if self.pad_token_id is not None and not integer(self.pad_token_id, None):
            problems.append(f"pad_token_id must be an integer or null, not {self.pad_token_id!r}")
        eps = self.rms_norm_eps
        if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 <= eps < math.inf):
            problems.append(f"rms_norm_eps must be a number >= 0, not {eps!r}")
        return problems

    # -- layer layout ---------------------------------------------------------------------------
    def is_attention(self, i: int) -> bool:
        return i % self.attn_layer_period == self.attn_layer_offset

    def is_moe(self, i: int) -> bool:
        return self.num_experts > 1 and i % self.expert_layer_period == self.expert_layer_offset

    @property
    def layer_types(self) -> list[str]:
        return ["attention" if self.is_attention(i) else "mamba" for i in range(self.num_hidden_layers)]

    @property
    def attention_layers(self) -> list[int]:
        return [i for i in range(self.num_hidden_layers) if self.is_attention(i)]

    @property
    def mamba_layers(self) -> list[int]:
        return [i for i in range(self.num_hidden_layers) if not self.is_attention(i)]

    @property
    def d_inner(self) -> int:
        return self.mamba_expand * self.hidden_size

    # -- (de)serialisation ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JambaConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        if "num_local_experts" in d and "num_experts" not in d:
            known["num_experts"] = d["num_local_experts"]
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    @classmethod
    def from_file(cls, path: str | Path) -> "JambaConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(path, "missing file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(path, f"not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise CheckpointError(path, "not a JSON object")
        if d.get("model_type") != "jamba":
            raise CheckpointError(path, f"model_type is {d.get('model_type')!r}, expected 'jamba'")
        archs = d.get("architectures")
        if isinstance(archs, list) and archs and not any(str(a).endswith("ForCausalLM") for a in archs):
            raise CheckpointError(path, f"architectures {archs} is not a text generator (JambaForCausalLM); "
                                        "a classifier or reward model cannot answer questions")
        if d.get("quantization_config"):      # fp8 / bitsandbytes / GPTQ weights need their scales
            q = d["quantization_config"]
            method = q.get("quant_method", "unknown") if isinstance(q, dict) else "unknown"
            raise CheckpointError(path, f"a quantized checkpoint (quantization_config: {method}) is not supported; "
                                        "use the bf16 / fp32 checkpoint (--quantize int8 quantizes that one at load)")
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise CheckpointError(path, f"invalid Jamba config: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {"model_type": "jamba", **d}
