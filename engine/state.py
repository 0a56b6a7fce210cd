"""HybridState: what Jamba carries from one token to the next.

Per Mamba layer: the conv window (the last K-1 inputs of the causal conv, [K-1, E]) and the SSM state
([E, N], always fp32). Per attention layer: the K/V rows so far ([G, L, Hd] each).

A state may hold only the K/V rows from `offset` on (`since(pos)`); `prefix.join(segment)` puts a
full state back together. The state store keeps per-document deltas this way.

K/V live in growable buffers shared copy-on-write: a continuation appends in place when no living
state holds rows past its own (else it copies), so older states keep seeing exactly their rows and
decoding is O(1) per token instead of an O(T) cat. States are never modified after they are made; the
rows of a state that is gone are free again, so a second question after cached documents appends
where the first one's (dropped) answer was, instead of copying every K/V row. A tensor taken from
`rows.k` / `rows.v` is valid while its state lives.

Serialized form: MAGIC + safetensors bytes (metadata: fingerprint, n_tokens, offset) + a checksum of
both: xxh3-128 (format 2, about 10x faster than sha256 here: a restore reads every byte through it), or
sha256 in format 1 blobs, which are still read.
"""
from __future__ import annotations

import hashlib
import json
import threading
import weakref
from dataclasses import dataclass, field

import torch
import xxhash
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from .config import JambaConfig
from .errors import StateError

MAGIC = b"JAMBADOCS-STATE\x02"
# magic -> (digest bytes, checksum of everything before the digest)
_CHECKSUMS = {MAGIC: (16, xxhash.xxh3_128_digest),          # to_bytes computes the same, in two updates
              b"JAMBADOCS-STATE\x01": (32, lambda data: hashlib.sha256(data).digest())}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class KVBuffer:
    """Preallocated K/V storage for one attention layer, viewed by the KVRows made on it.

    Rows past the longest *living* view are free: the views are tracked by weak reference, so a
    dropped continuation gives its rows back."""

    def __init__(self, k: Tensor, v: Tensor):
        self.k, self.v = k, v                        # [G, cap, Hd] each
        self.lock = threading.Lock()                 # take-then-write: two continuations never share rows
        self.views: weakref.WeakSet[KVRows] = weakref.WeakSet()

    @property
    def filled(self) -> int:
        """Rows held by some living view."""
        with self.lock:                              # views are added under it (a set must not grow while read)
            return self._filled()

    def _filled(self) -> int:
        return max((r.length for r in self.views), default=0)

    def take(self, length: int, n: int) -> "KVRows | None":
        """A view of rows [0, length+n) if no living view goes past `length` and they fit; the
        caller then writes rows [length, length+n)."""
        with self.lock:
            if self.capacity >= length + n and self._filled() == length:
                return KVRows(self, length + n)      # registered before the lock is let go
            return None

    @property
    def capacity(self) -> int:
        return self.k.shape[1]


@dataclass(frozen=True, eq=False)
class KVRows:
    """Rows [0, length) of a KVBuffer (the rows this state owns)."""
    buf: KVBuffer
    length: int

    def __post_init__(self) -> None:
        self.buf.views.add(self)        # under buf.lock (take) or on a buffer nobody else holds yet

    @staticmethod
    def empty(G: int, Hd: int, dtype: torch.dtype, device: torch.device, capacity: int = 0) -> "KVRows":
        z = torch.empty(G, capacity, Hd, dtype=dtype, device=device)
        return KVRows(KVBuffer(z, z.clone()), 0)

    @staticmethod
    def of(k: Tensor, v: Tensor) -> "KVRows":
        return KVRows(KVBuffer(k.contiguous(), v.contiguous()), k.shape[1])

    @property
    def k(self) -> Tensor:
        return self.buf.k[:, :self.length]            # [G, L, Hd]

    @property
    def v(self) -> Tensor:
        return self.buf.v[:, :self.length]            # [G, L, Hd]

    @staticmethod
    def concat(parts: list["KVRows"], room: int = 0) -> "KVRows":
        """The parts' rows one after another in a new buffer with `room` rows to spare."""
        k0 = parts[0].buf.k
        n = sum(p.length for p in parts)
        out = KVRows.empty(k0.shape[0], k0.shape[2], k0.dtype, k0.device, n + room)
        at = 0
        for p in parts:
            out.buf.k[:, at:at + p.length] = p.k
            out.buf.v[:, at:at + p.length] = p.v
            at += p.length
        return out.buf.take(0, n)

    def reserve(self, extra: int, room: int = 0) -> "KVRows":
        """Rows able to take `extra` appended rows in place (copies into a new buffer if needed,
        with `room` more rows to spare)."""
        buf = self.buf
        if buf.filled == self.length and buf.capacity >= self.length + extra:
            return self
        cap = self.length + extra + room
        if extra <= 16 and not room:                  # decoding, no room asked for: grow geometrically
            cap = max(cap, int(self.length * 1.25) + 256)
        G, _, Hd = buf.k.shape
        k = torch.empty(G, cap, Hd, dtype=buf.k.dtype, device=buf.k.device)
        v = torch.empty_like(k)
        k[:, :self.length] = self.k
        v[:, :self.length] = self.v
        return KVRows(KVBuffer(k, v), self.length)

    def append(self, k_new: Tensor, v_new: Tensor) -> "KVRows":
        """New rows with k_new/v_new ([G, T, Hd]) after ours; ours stay untouched."""
        T = k_new.shape[1]
        rows = self
        while (taken := rows.buf.take(rows.length, T)) is None:
            rows = rows.reserve(T)                    # a fresh buffer nobody else holds: the take succeeds
        taken.buf.k[:, rows.length:taken.length] = k_new
        taken.buf.v[:, rows.length:taken.length] = v_new
        return taken

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


@dataclass(frozen=True, eq=False)
class HybridState:
    """The model state after `n_tokens` tokens; K/V rows cover [offset, n_tokens)."""
    n_tokens: int
    conv: dict[int, Tensor]                   # layer -> [K-1, E] model dtype
    ssm: dict[int, Tensor]                    # layer -> [E, N] fp32
    kv: dict[int, KVRows]                     # layer -> rows [offset, n_tokens)
    offset: int = 0
    fingerprint: str = ""
    meta: dict = field(default_factory=dict, compare=False)

    @staticmethod
    def empty(cfg: JambaConfig, dtype: torch.dtype, device: torch.device | str = "cpu",
              fingerprint: str = "") -> "HybridState":
        device = torch.device(device)
        E, N, K = cfg.d_inner, cfg.mamba_d_state, cfg.mamba_d_conv
        conv = {i: torch.zeros(K - 1, E, dtype=dtype, device=device) for i in cfg.mamba_layers}
        ssm = {i: torch.zeros(E, N, dtype=torch.float32, device=device) for i in cfg.mamba_layers}
        kv = {i: KVRows.empty(cfg.num_key_value_heads, cfg.head_dim, dtype, device) for i in cfg.attention_layers}
        return HybridState(0, conv, ssm, kv, 0, fingerprint)

    # -- size -------------------------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        return (sum(t.numel() * t.element_size() for t in self.conv.values())
                + sum(t.numel() * t.element_size() for t in self.ssm.values())
                + sum(r.nbytes for r in self.kv.values()))

    @property
    def kv_tokens(self) -> int:
        return self.n_tokens - self.offset

    # -- copies and deltas -------------------------------------------------------------------
    def clone(self) -> "HybridState":
        """A deep copy sharing no storage with this state."""
        return HybridState(self.n_tokens, {i: t.clone() for i, t in self.conv.items()},
                           {i: t.clone() for i, t in self.ssm.items()},
                           {i: KVRows.of(r.k.clone(), r.v.clone()) for i, r in self.kv.items()},
                           self.offset, self.fingerprint, dict(self.meta))

    def since(self, pos: int) -> "HybridState":
        """K/V rows [pos, n_tokens) and the Mamba state at n_tokens: the delta after a prefix of `pos` tokens."""
        if not self.offset <= pos <= self.n_tokens:
            raise StateError(f"since({pos}): position outside this state's rows [{self.offset}, {self.n_tokens}]")
        a = pos - self.offset
        kv = {i: KVRows.of(r.k[:, a:].clone(), r.v[:, a:].clone()) for i, r in self.kv.items()}
        return HybridState(self.n_tokens, {i: t.clone() for i, t in self.conv.items()},
                           {i: t.clone() for i, t in self.ssm.items()}, kv, pos, self.fingerprint)

    def join(self, segment: "HybridState", room: int = 0) -> "HybridState":
        """This state's rows followed by `segment`'s (whose offset must be our n_tokens), in a new
        buffer with `room` rows to spare for a continuation."""
        if segment.offset != self.n_tokens:
            raise StateError(f"join: segment starts at token {segment.offset}, prefix ends at {self.n_tokens}")
        if self.fingerprint and segment.fingerprint and self.fingerprint != segment.fingerprint:
            raise StateError("join: the two states belong to different models")
        if set(self.kv) != set(segment.kv) or set(self.ssm) != set(segment.ssm):
            raise StateError("join: the two states have different layer layouts")
        kv = {i: KVRows.concat([r, segment.kv[i]], room) for i, r in self.kv.items()}
        return HybridState(segment.n_tokens, dict(segment.conv), dict(segment.ssm), kv, self.offset,
                           self.fingerprint or segment.fingerprint)

    def rows_in(self, later: "HybridState") -> "HybridState":
        """This state with its K/V rows read from the buffers of `later`, a continuation of it (whose
        first rows are ours, copied or not): ours are freed once nothing else holds them."""
        if later.offset != self.offset or later.n_tokens < self.n_tokens or set(later.kv) != set(self.kv):
            raise StateError("rows_in: the other state does not continue this one")
        kv = {}
        for i, r in self.kv.items():
            buf = later.kv[i].buf
            with buf.lock:
                kv[i] = KVRows(buf, r.length)
        return HybridState(self.n_tokens, self.conv, self.ssm, kv, self.offset, self.fingerprint, self.meta)

    def with_room(self, room: int) -> "HybridState":
        """This state with at least `room` spare K/V rows after its own (a copy only when needed), so
        continuations of it append in place."""
        kv = {i: r.reserve(room) for i, r in self.kv.items()}
        return HybridState(self.n_tokens, self.conv, self.ssm, kv, self.offset, self.fingerprint, self.meta)

    # -- bytes ----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """MAGIC + safetensors(conv.i, ssm.i, k.i, v.i; metadata) + xxh3-128 of everything before it."""
        tensors: dict[str, Tensor] = {}
        for i, t in self.conv.items():
            tensors[f"conv.{i}"] = t.detach().to("cpu").contiguous()
        for i, t in self.ssm.items():
            tensors[f"ssm.{i}"] = t.detach().to("cpu").contiguous()
        for i, r in self.kv.items():
            tensors[f"k.{i}"] = r.k.detach().to("cpu").contiguous()
            tensors[f"v.{i}"] = r.v.detach().to("cpu").contiguous()
        # one metadata key so the header (and the blob) is deterministic
        meta = {"jambadocs": json.dumps({"format": "hybrid-state", "version": 1, "fingerprint": self.fingerprint,
                                         "n_tokens": self.n_tokens, "offset": self.offset, "meta": self.meta},
                                        sort_keys=True)}
        payload = st_save(tensors, metadata=meta)
        digest = xxhash.xxh3_128(MAGIC)
        digest.update(payload)
        return b"".join((MAGIC, payload, digest.digest()))   # one copy of the payload, not two


def state_from_bytes(blob: bytes, cfg: JambaConfig, fingerprint: str, dtype: torch.dtype,
                     device: torch.device | str = "cpu") -> HybridState:
    """Inverse of `to_bytes`, refusing damaged blobs and states of another model or config."""
    view = memoryview(blob)
    size, checksum = _CHECKSUMS.get(bytes(view[:len(MAGIC)]), (0, None))
    if checksum is None or len(view) < len(MAGIC) + size:
        raise StateError("not a jambadocs hybrid state (bad magic or too short)")
    if checksum(view[:-size]) != view[-size:]:
        raise StateError("damaged state blob: checksum mismatch")
    payload = bytes(view[len(MAGIC):-size])
    try:
        tensors = st_load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        meta = json.loads(json.loads(payload[8:8 + header_len])["__metadata__"]["jambadocs"])
        n_tokens, offset = int(meta["n_tokens"]), int(meta["offset"])
        if meta.get("format") != "hybrid-state" or not 0 <= offset <= n_tokens:
            raise ValueError("bad header")
    except Exception as e:
        raise StateError(f"damaged state blob: {e}") from None
    if meta.get("fingerprint") != fingerprint:
        raise StateError(f"state belongs to another model (fingerprint {meta.get('fingerprint', '')[:12]}..., "
                         f"this engine {fingerprint[:12]}...)")
    device = torch.device(device)
    E, N, K, G, Hd = cfg.d_inner, cfg.mamba_d_state, cfg.mamba_d_conv, cfg.num_key_value_heads, cfg.head_dim
    L = n_tokens - offset
    expected = {f"conv.{i}": ((K - 1, E), dtype) for i in cfg.mamba_layers}
    expected.update({f"ssm.{i}": ((E, N), torch.float32) for i in cfg.mamba_layers})
    for i in cfg.attention_layers:
        expected[f"k.{i}"] = expected[f"v.{i}"] = ((G, L, Hd), dtype)
    if set(tensors) != set(expected):
        raise StateError(f"state tensors do not match this model's layers: {sorted(set(tensors) ^ set(expected))}")
    for name, (shape, dt) in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != dt:
            raise StateError(f"state tensor {name} is {tuple(t.shape)} {t.dtype}, expected {shape} {dt}")
    conv = {i: tensors[f"conv.{i}"].to(device) for i in cfg.mamba_layers}
    ssm = {i: tensors[f"ssm.{i}"].to(device) for i in cfg.mamba_layers}
    kv = {i: KVRows.of(tensors[f"k.{i}"].to(device), tensors[f"v.{i}"].to(device)) for i in cfg.attention_layers}
    return HybridState(n_tokens, conv, ssm, kv, offset, fingerprint, dict(meta.get("meta") or {}))


def state_bytes(cfg: JambaConfig, n_tokens: int, dtype: torch.dtype | str = torch.bfloat16) -> int:
    """Bytes of a full state after `n_tokens` tokens, from the config alone.

    KV: 2 x attention layers x kv heads x head_dim x dtype bytes per token; Mamba: a fixed
    conv window ((K-1) x E, model dtype) and SSM state (E x N, fp32) per Mamba layer.
    """
    if isinstance(dtype, str):
        dtype = _DTYPES[dtype]
    el = torch.empty(0, dtype=dtype).element_size()
    kv = 2 * len(cfg.attention_layers) * cfg.num_key_value_heads * cfg.head_dim * el * n_tokens
    mamba = len(cfg.mamba_layers) * ((cfg.mamba_d_conv - 1) * cfg.d_inner * el + cfg.d_inner * cfg.mamba_d_state * 4)
    return kv + mamba
