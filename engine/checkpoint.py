"""Load a Hugging Face Jamba checkpoint folder: config, memory-mapped safetensors, fingerprint.

`safe_open(...).get_tensor` maps the file (pages are read on first touch), so weights kept in the
checkpoint's dtype on CPU are not copied (except as below); a dtype or device change makes one copy
per tensor. Both the hub layout (per-expert tensors) and transformers-5's fused expert layout
(`experts.gate_up_proj` [X, 2I, D], `experts.down_proj` [X, D, I]) are read; fused ones are sliced
into per-expert views without copying. Each MLP's gate and up matrices are stored as one
[2I, D] matrix, and q, k, v as one [(H+2G) Hd, D] matrix (one matmul each): a copy, except for
transformers-5's fused experts on GPU.

On CPU, a linear weight with more outputs than inputs (and at least 64 inputs) is stored
column-major (`gemv_layout`): torch's one-row matmul (decode) reads it 2-2.5x faster that way,
and prefill's matmuls run at the same speed either way (bench/gemv.py). That is one copy of
those matrices, made in place of the memory-mapped original (never two copies held once loading
ends).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from . import cpu_kernels
from .config import JambaConfig
from .errors import Cancelled, CheckpointError
from .weights import (AttentionWeights, LayerWeights, MambaWeights, MLPWeights, ModelWeights,
                      MoEWeights)

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_FULL_HASH_LIMIT = 64 << 20      # files up to 64 MiB are hashed whole
_SAMPLE_BLOCKS, _SAMPLE_SIZE = 64, 64 << 10
_TENSOR_SAMPLE = 4 << 10         # bytes read at the start, middle and end of every tensor of a large file


def weight_files(folder: Path) -> dict[str, Path]:
    """Map tensor name -> file holding it (from the index when sharded)."""
    index = folder / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(index, f"unreadable index ({e})") from None
        files = {name: folder / fname for name, fname in weight_map.items()}
        for path in sorted(set(files.values())):
            if not path.exists():
                raise CheckpointError(path, f"missing file (listed in {INDEX_FILE})")
        return files
    single = folder / SINGLE_FILE
    if single.exists():
        return {name: single for name in _open_names(single)}
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise CheckpointError(folder, "only safetensors weights are supported (pickled .bin/.pt files are refused)")
    raise CheckpointError(single, f"missing file (no {SINGLE_FILE} or {INDEX_FILE})")


def _open_names(path: Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as e:  # safetensors raises several types for corrupt files
        raise _unreadable(path, f"not a valid safetensors file ({e})") from None


_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def _unreadable(path: Path, problem: str) -> CheckpointError:
    """The error for a file that does not parse; a Git LFS pointer (the text file a clone without
    git-lfs holds in place of a large file) and a truncated safetensors file are named as such."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LFS_POINTER))
            if head == _LFS_POINTER:
                problem = ("a Git LFS pointer, not the file itself (the repository was cloned without git-lfs): "
                           "run `git lfs pull` in that folder, or get the checkpoint with `jambadocs download`")
            elif (expected := _safetensors_size(f)) and path.stat().st_size < expected:
                problem = (f"truncated: {path.stat().st_size:,} of the {expected:,} bytes its header lists "
                           "(an interrupted download?)")
    except OSError:
        pass
    return CheckpointError(path, problem)


def _safetensors_size(f) -> int | None:
    """The size the open safetensors file `f` should have, from its header (None
    when the header itself is not there whole)."""
    f.seek(0)
    n = int.from_bytes(f.read(8), "little")
    if not 2 <= n <= 100 << 20:
        return None
    try:
        header = json.loads(f.read(n))
        return 8 + n + max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def fingerprint(folder: Path, files: list[Path]) -> str:
    """sha256 over config.json and the weight files (whole when small, headers + sampled blocks when large)."""
    h = hashlib.sha256()
    h.update((folder / "config.json").read_bytes())
    for path in sorted(set(files)):
        size = path.stat().st_size
        h.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            if size <= _FULL_HASH_LIMIT:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                continue
            header_len = int.from_bytes(f.read(8), "little")
            header = f.read(min(header_len, 100 << 20))
            h.update(header)
            step = max(1, size // _SAMPLE_BLOCKS)
            for pos in range(0, size, step):
                f.seek(pos)
                h.update(f.read(_SAMPLE_SIZE))
            # every tensor contributes its first, middle and last bytes: a checkpoint that differs from
            # another only in some tensors (a fine-tune of a few layers, a merged LoRA) must not share
            # its fingerprint, hence its cached states (evenly spaced blocks can miss whole tensors)
            try:
                spans = sorted(tuple(v["data_offsets"]) for k, v in json.loads(header).items()
                               if k != "__metadata__")
            except (ValueError, TypeError, KeyError, AttributeError):
                spans = []
            base = 8 + header_len
            for a, b in spans:
                for pos in sorted({a, max(a, (a + b) // 2 - _TENSOR_SAMPLE // 2), max(a, b - _TENSOR_SAMPLE)}):
                    f.seek(base + pos)
                    h.update(f.read(min(_TENSOR_SAMPLE, b - pos)))
    return h.hexdigest()


# Narrowest input for which the column-major layout pays (bench/gemv.py: [512, 16] read 0.8x as fast).
_MIN_COLUMN_MAJOR_IN = 64


def gemv_layout(w: torch.Tensor) -> torch.Tensor:
    """w [out, in] -> the same values, column-major (a transposed view of an [in, out] buffer) when
    on CPU with out > in >= 64 and decoded on torch's GEMV (not fp32 with engine/cpu_kernels.py on,
    whose GEMV reads row-major faster). torch's CPU GEMV vectorises along the contiguous dimension: x @ W
    with W [in, out] streams rows of `out` values, and for out > in that is the faster read
    (2.3-2.5x for the bench model's wide matrices, bench/gemv.py)."""
    if w.dim() == 2 and _column_major(w.shape[0], w.shape[1], w.device, w.dtype) and w.stride(0) != 1:
        return w.t().contiguous().t()
    return w


def _column_major(out_dim: int, in_dim: int, device: torch.device, dtype: torch.dtype) -> bool:
    """The layout rule of `gemv_layout`: CPU, out > in >= 64, and decode on torch's GEMV (the pooled
    fp32 GEMV of engine/cpu_kernels.py reads row-major faster)."""
    pooled = dtype == torch.float32 and cpu_kernels.active()
    return device.type == "cpu" and out_dim > in_dim >= _MIN_COLUMN_MAJOR_IN and not pooled


class _TensorSource:
    """Reads named tensors from the checkpoint's files, checking shapes, converting dtype/device."""

    def __init__(self, files: dict[str, Path], stack: ExitStack, dtype: torch.dtype, device: torch.device,
                 cancel: threading.Event | None = None):
        self.files, self.dtype, self.device, self.cancel = files, dtype, device, cancel
        self.handles: dict[Path, object] = {}
        for path in sorted(set(files.values())):
            try:
                self.handles[path] = stack.enter_context(safe_open(str(path), framework="pt"))
            except Exception as e:
                raise _unreadable(path, f"not a valid safetensors file ({e})") from None
        self.folder = next(iter(self.handles)).parent if self.handles else Path(".")

    def has(self, name: str) -> bool:
        return name in self.files

    def raw(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"loading {self.folder} was stopped")
        if name not in self.files:
            raise CheckpointError(self.folder, f"missing tensor {name!r}")
        path = self.files[name]
        try:
            t = self.handles[path].get_tensor(name)
        except Exception as e:
            raise CheckpointError(path, f"cannot read tensor {name!r} ({e})") from None
        if not t.is_floating_point() or t.element_size() < 2:
            raise CheckpointError(path, f"tensor {name!r} is stored as {str(t.dtype).removeprefix('torch.')}, "
                                        "not as 16- or 32-bit floats (a quantized checkpoint is not supported)")
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(path, f"tensor {name!r} has shape {tuple(t.shape)}, config expects {tuple(shape)}")
        return t

    def get(self, name: str, *shape: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.raw(name, shape).to(device=self.device, dtype=dtype or self.dtype)

    def optional(self, name: str, *shape: int) -> torch.Tensor | None:
        return self.get(name, *shape) if self.has(name) else None

    def linear(self, name: str, *shape: int) -> torch.Tensor:
        """A matmul weight [out, in], in the layout this device multiplies fastest."""
        return gemv_layout(self.get(name, *shape))


def _mamba(src: _TensorSource, p: str, cfg: JambaConfig) -> MambaWeights:
    D, E, N, K, R = cfg.hidden_size, cfg.d_inner, cfg.mamba_d_state, cfg.mamba_d_conv, cfg.mamba_dt_rank
    f32 = torch.float32
    return MambaWeights(
        in_proj=src.linear(p + "in_proj.weight", 2 * E, D),
        in_proj_bias=src.get(p + "in_proj.bias", 2 * E) if cfg.mamba_proj_bias else None,
        conv_w=_taps_by_position(src.get(p + "conv1d.weight", E, 1, K)[:, 0, :]),
        conv_b=src.get(p + "conv1d.bias", E) if cfg.mamba_conv_bias else None,
        x_proj=src.linear(p + "x_proj.weight", R + 2 * N, E),
        dt_proj=src.linear(p + "dt_proj.weight", E, R),
        dt_bias=src.get(p + "dt_proj.bias", E, dtype=f32),
        A=-torch.exp(src.get(p + "A_log", E, N, dtype=f32)),
        D=src.get(p + "D", E, dtype=f32),
        out_proj=src.linear(p + "out_proj.weight", D, E),
        out_proj_bias=src.get(p + "out_proj.bias", D) if cfg.mamba_proj_bias else None,
        dbc_norm=torch.cat([src.get(p + "dt_layernorm.weight", R), src.get(p + "b_layernorm.weight", N),
                            src.get(p + "c_layernorm.weight", N)]),
    )


def _attention(src: _TensorSource, p: str, cfg: JambaConfig) -> AttentionWeights:
    D, H, G, Hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    parts = [src.get(p + "q_proj.weight", H * Hd, D), src.get(p + "k_proj.weight", G * Hd, D),
             src.get(p + "v_proj.weight", G * Hd, D)]
    return AttentionWeights(qkv=_stack_rows(parts), o=src.linear(p + "o_proj.weight", D, H * Hd))


def _taps_by_position(w: torch.Tensor) -> torch.Tensor:
    """Conv taps [E, K], on CPU stored as a [K, E] buffer: each tap's E weights contiguous, which is
    what the conv multiplies by (a row of inputs per tap)."""
    return w.t().contiguous().t() if w.device.type == "cpu" else w


def _stack_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """Matrices [o_i, D] -> [sum o_i, D] in one new buffer, already in `gemv_layout`."""
    if _column_major(sum(t.shape[0] for t in parts), parts[0].shape[1], parts[0].device, parts[0].dtype):
        return torch.cat([t.t() for t in parts], dim=1).t()         # [D, sum o_i] buffer viewed as [sum o_i, D]
    return torch.cat(parts)


def _mlp(src: _TensorSource, p: str, cfg: JambaConfig) -> MLPWeights:
    D, I = cfg.hidden_size, cfg.intermediate_size
    return MLPWeights(gate_up=_stack_rows([src.get(p + "gate_proj.weight", I, D), src.get(p + "up_proj.weight", I, D)]),
                      down=src.linear(p + "down_proj.weight", D, I))


def _moe(src: _TensorSource, p: str, cfg: JambaConfig) -> MoEWeights:
    D, I, X = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts
    router = src.linear(p + "router.weight", X, D)
    if src.has(p + "experts.gate_up_proj"):   # transformers-5 fused layout
        gate_up = src.get(p + "experts.gate_up_proj", X, 2 * I, D)
        down = src.get(p + "experts.down_proj", X, D, I)
        experts = [MLPWeights(gate_up=gemv_layout(gate_up[e]), down=gemv_layout(down[e])) for e in range(X)]
    else:
        experts = [_mlp(src, p + f"experts.{e}.", cfg) for e in range(X)]
    return MoEWeights(router=router, experts=experts, top_k=cfg.num_experts_per_tok)


def load_weights(folder: Path, cfg: JambaConfig, dtype: torch.dtype, device: torch.device,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: threading.Event | None = None) -> tuple[ModelWeights, list[Path]]:
    """Read and check every tensor the config calls for; returns the weights and the files read.
    `progress(done, total)` after each layer (total: the layers, plus 1 for embeddings and head).
    `cancel` set: Cancelled before the next tensor (a large checkpoint's load stops in seconds)."""
    files = weight_files(folder)
    with ExitStack() as stack:
        src = _TensorSource(files, stack, dtype, device, cancel)
        D, V = cfg.hidden_size, cfg.vocab_size
        layers = []
        for i in range(cfg.num_hidden_layers):
            p = f"model.layers.{i}."
            mixer = _attention(src, p + "self_attn.", cfg) if cfg.is_attention(i) else _mamba(src, p + "mamba.", cfg)
            ffn = _moe(src, p + "feed_forward.", cfg) if cfg.is_moe(i) else _mlp(src, p + "feed_forward.", cfg)
            layers.append(LayerWeights(input_norm=src.get(p + "input_layernorm.weight", D), mixer=mixer,
                                       pre_ff_norm=src.get(p + "pre_ff_layernorm.weight", D), ffn=ffn))
            if progress is not None:
                progress(i + 1, cfg.num_hidden_layers + 1)
        if cfg.tie_word_embeddings and not src.has("model.embed_tokens.weight") and src.has("lm_head.weight"):
            # the shared tensor stored once, under the head's name (safetensors' save_model keeps that
            # one of a tied pair); transformers ties the embedding to it
            embed = lm_head = src.get("lm_head.weight", V, D)
        else:
            embed = src.get("model.embed_tokens.weight", V, D)
            tied = cfg.tie_word_embeddings and not src.has("lm_head.weight")
            lm_head = embed if tied else src.linear("lm_head.weight", V, D)
        weights = ModelWeights(embed=embed, layers=layers, final_norm=src.get("model.final_layernorm.weight", D),
                               lm_head=lm_head, dtype=dtype, device=device)
        if progress is not None:
            progress(cfg.num_hidden_layers + 1, cfg.num_hidden_layers + 1)
    return weights, sorted(set(files.values()))


GENERATION_CONFIG = "generation_config.json"


def generation_config(folder: Path) -> dict:
    """The checkpoint's generation_config.json ({} when it has none); broken JSON names the file."""
    gen = folder / GENERATION_CONFIG
    if not gen.exists():
        return {}
    try:
        d = json.loads(gen.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CheckpointError(gen, f"not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise CheckpointError(gen, "not a JSON object")
    return d


def read_sampling(folder: Path) -> tuple[float, float]:
    """(temperature, top_p) the checkpoint recommends in generation_config.json: its temperature and
    top_p when it sets `do_sample` (1.0 for either one it leaves out or sets to null, as transformers
    does), else greedy (0.0, 1.0). Values out of range are logged and ignored (greedy): an odd
    recommendation must not keep a model from loading."""
    d = generation_config(folder)
    if not d.get("do_sample"):
        return 0.0, 1.0
    try:
        temperature = float(1.0 if d.get("temperature") is None else d["temperature"])
        top_p = float(1.0 if d.get("top_p") is None else d["top_p"])
    except (TypeError, ValueError):
        temperature, top_p = -1.0, -1.0
    if not (0 <= temperature <= 100 and 0 < top_p <= 1):
        log.warning("%s: temperature %r / top_p %r are not usable; decoding greedily",
                    folder / GENERATION_CONFIG, d.get("temperature"), d.get("top_p"))
        return 0.0, 1.0
    return temperature, top_p


def read_eos_ids(folder: Path, cfg: JambaConfig, tokenizer: Any = None) -> list[int]:
    """The ids an answer stops at: generation_config.json's eos ids (else config.json's), then
    config.json's and the tokenizer's eos, and the special token the chat template ends an
    assistant turn with (`turn_end_id`). A checkpoint whose generation_config names only
    <|endoftext|> while its turns end with <|im_end|> (a Jamba2 Mini mirror does) would otherwise
    write past its turn into a made-up next one."""
    eos = generation_config(folder).get("eos_token_id", cfg.eos_token_id)
    if not all(e is None or (isinstance(e, int) and not isinstance(e, bool)) for e in
               (eos if isinstance(eos, list) else [eos])):
        raise CheckpointError(folder / GENERATION_CONFIG,
                              f"eos_token_id must be a token id, a list of token ids or null, not {eos!r}")
    out: list[int] = []
    for found in (eos, cfg.eos_token_id, getattr(tokenizer, "eos_token_id", None), turn_end_id(tokenizer)):
        for e in (found if isinstance(found, list) else [found]):
            if e is not None and int(e) not in out:
                out.append(int(e))
    return out


_TURN = "\u27e6answer\u27e7"       # a sentinel assistant message no template produces


def turn_end_id(tokenizer: Any) -> int | None:
    """The special token right after an assistant message in the tokenizer's chat template
    (<|eom|>, <|im_end|>, <|eot_id|>), or None (no template, or plain text there)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": _TURN}], tokenize=False)
    except Exception:  # noqa: BLE001 -- a template that cannot render this: no extra stop token
        return None
    after = text.partition(_TURN)[2] if isinstance(text, str) else ""
    ids = tokenizer.encode(after.lstrip(" "), add_special_tokens=False) if after.strip() else []
    special = set(getattr(tokenizer, "all_special_ids", ())) | {
        i for i, t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items() if getattr(t, "special", False)}
    return ids[0] if ids and ids[0] in special else None


def load_tokenizer(folder: Path):
    """The checkpoint's tokenizer as a transformers fast tokenizer. transformers reads config.json
    on the way (its model type picks the tokenizer class): a field its strict JambaConfig refuses
    (`use_cache: "yes"`, `rms_norm_eps: 1`) is named in config.json, not blamed on the tokenizer."""
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer.model").exists():
        raise CheckpointError(folder / "tokenizer.json", "missing file (the checkpoint has no tokenizer)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except StrictDataclassError as e:       # it reads config.json too, as transformers' strict JambaConfig
        raise CheckpointError(folder / "config.json", f"invalid Jamba config ({e})") from None
    except Exception as e:
        path = next((p for p in (folder / "tokenizer.json", folder / "tokenizer.model") if p.exists()),
                    folder / "tokenizer.json")
        raise _unreadable(path, f"cannot load tokenizer ({e})") from None
