"""`Engine`: a loaded Jamba checkpoint with prefill / decode / generate over HybridStates."""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from . import cpu_kernels
from .checkpoint import fingerprint, load_tokenizer, load_weights, read_eos_ids, read_sampling
from .config import JambaConfig
from .errors import CheckpointError, EngineError, StateError
from .generate import Generation
from .model import DECODE_ROOM, forward_chunk, prefill
from .state import HybridState, dtype_name, state_from_bytes
from .weights import ModelWeights

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device for "cpu" / "cuda[:N]" / None or "auto"; EngineError for one that cannot run
    here (a misspelt name, or cuda without a GPU that torch can use)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise EngineError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r}: this torch sees no CUDA GPU; use cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise EngineError(f"unsupported dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


class Engine:
    """See docs/interfaces.md. Thread-safe for concurrent calls: states are immutable values."""

    def __init__(self, config: JambaConfig, weights: ModelWeights, tokenizer, fingerprint: str,
                 eos_token_ids: list[int], path: Path | None = None, chunk_size: int = 1024,
                 sampling: tuple[float, float] = (0.0, 1.0)):
        self.config, self.weights, self.tokenizer = config, weights, tokenizer
        self.fingerprint, self.eos_token_ids, self.path = fingerprint, eos_token_ids, path
        self.sampling = sampling        # (temperature, top_p) from generation_config.json; (0, 1): greedy
        self.chunk_size = chunk_size
        self.device, self.dtype = weights.device, weights.dtype

    @property
    def kernels(self) -> dict[str, str]:
        """What each op runs on this engine's device, e.g. {"scan": "torch", ...}."""
        from . import kernels
        names = dict(kernels.select(self.device).names)
        if self.device.type == "cpu":
            c = self.dtype == torch.float32 and cpu_kernels.active()
            names["gemv"] = cpu_kernels.describe() if c else "torch"
            if c and names.get("attention") == "sdpa":
                names["attention"] = "C"    # engine/csrc/attention.c for T > 1, decode_attention.c for T = 1
            if c and names.get("scan") == "torch":
                names["scan"] = names["step"] = "C"                 # engine/csrc/scan.c; decode.c's jd_mamba_step
        return names

    @property
    def max_context(self) -> int:
        return self.config.max_position_embeddings

    def new_state(self) -> HybridState:
        return HybridState.empty(self.config, self.dtype, self.device, self.fingerprint)

    def _ids(self, token_ids: Sequence[int] | Tensor) -> Tensor:
        ids = torch.as_tensor(token_ids, dtype=torch.long).flatten().to(self.device)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise EngineError(f"token id out of range [0, {self.config.vocab_size})")
        return ids

    def _check(self, state: HybridState | None) -> HybridState:
        if state is None:
            return self.new_state()
        if state.fingerprint and state.fingerprint != self.fingerprint:
            raise StateError("state belongs to another model (fingerprint differs)")
        return state

    @torch.inference_mode()
    def prefill(self, token_ids: Sequence[int] | Tensor, state: HybridState | None = None, logits: str = "all",
                progress: Callable[[int, int], None] | None = None,
                cancel: threading.Event | None = None, room: int = DECODE_ROOM) -> tuple[Tensor | None, HybridState]:
        """Continue `state` (None = empty; never modified) with token_ids. logits: "all" [T, V],
        "last" [1, V], "none" None; fp32. `room`: K/V rows to keep spare after them for the tokens
        that will follow (used when the K/V needs a new buffer), so those append without a copy."""
        return prefill(self.config, self.weights, self._ids(token_ids), self._check(state), logits,
                       self.chunk_size, progress, cancel, room)

    @torch.inference_mode()
    def decode_step(self, token: int, state: HybridState) -> tuple[Tensor, HybridState]:
        """One token -> logits [1, V] and the next state."""
        if state.offset:
            raise EngineError(f"cannot continue from a partial state (K/V rows start at {state.offset}); join it first")
        if state.n_tokens + 1 > self.max_context:
            raise EngineError(f"{state.n_tokens + 1} tokens exceed the model's context of {self.max_context}")
        if not 0 <= token < self.config.vocab_size:
            raise EngineError(f"token id {token} out of range [0, {self.config.vocab_size})")
        ids = torch.tensor([token], dtype=torch.long, device=self.device)
        return forward_chunk(self.config, self.weights, ids, state, "last")

    def generate(self, token_ids: Sequence[int], state: HybridState | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] = (), cancel: threading.Event | None = None) -> Generation:
        """Iterable of text pieces; see `Generation` for what is available afterwards."""
        return Generation(self, token_ids, self._check(state), max_new_tokens, temperature, top_p, seed,
                          stop, cancel)

    def state_from_bytes(self, blob: bytes) -> HybridState:
        return state_from_bytes(blob, self.config, self.fingerprint, self.dtype, self.device)

    def info(self) -> dict:
        return {"engine": "jamba", "model": str(self.path) if self.path else "", "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."), "max_context": self.max_context,
                "decode": self.decode_kernels, "fingerprint": self.fingerprint}

    @property
    def decode_kernels(self) -> str:
        """What a decode step runs on, in words: "C on 2 threads" / "torch" (CPU), the step kernel (CUDA)."""
        k = self.kernels
        return k.get("gemv") or k.get("step", "torch")


def load_engine(path: str | Path, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                quantize: str | None = None, chunk_size: int = 1024,
                progress: Callable[[str, int, int], None] | None = None,
                cancel: threading.Event | None = None) -> Engine:
    """Load a Jamba checkpoint folder (HF layout). device None -> cuda if present else cpu;
    dtype None -> bf16 on cuda, fp32 on cpu. `progress(stage, done, total)`: stage "weights"
    (layers read), then "int8" (layers quantized) when asked to quantize. `cancel` set (the
    process is stopping): Cancelled before the next tensor read or quantized."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(folder, "not a folder")
    cfg = JambaConfig.from_file(folder / "config.json")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if dev.type == "cpu" and dt == torch.float32:
        cpu_kernels.enable()                    # decode's one-row products on all cores (torch's GEMV if no compiler)
    if quantize is not None:
        from .quant import METHODS
        if quantize not in METHODS:
            raise EngineError(f"quantize={quantize!r} is not supported; use one of {list(METHODS)} or None")
    # quantize on CPU (memory-mapped weights), then move: full-precision FFNs never sit on the GPU
    def stage(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    tokenizer = load_tokenizer(folder)      # seconds, and checks config.json as transformers does: before the weights
    eos_ids = read_eos_ids(folder, cfg, tokenizer)
    weights, files = load_weights(folder, cfg, dt, dev if quantize is None else torch.device("cpu"), stage("weights"),
                                  cancel)
    if quantize is not None:
        from .quant import quantize_weights
        weights = quantize_weights(weights, quantize, dev, stage("int8"), cancel)
    # states depend on the weights and on how they are computed: dtype and quantization are part of the key
    fp = hashlib.sha256(f"{fingerprint(folder, files)}:{dtype_name(dt)}:{quantize or 'none'}".encode()).hexdigest()
    return Engine(cfg, weights, tokenizer, fp, eos_ids, folder, chunk_size,
                  sampling=read_sampling(folder))
