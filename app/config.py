"""Settings: every knob of the app, read from JAMBADOCS_* environment variables and CLI flags."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import platformdirs

from app.errors import InvalidInput

ENGINES = ("auto", "extractive", "jamba", "remote")


def _env(name: str) -> str | None:
    value = os.environ.get(f"JAMBADOCS_{name}")
    return value if value not in (None, "") else None


def _env_number(name: str, kind: type = int) -> int | float | None:
    """JAMBADOCS_<name> as an int (or float), None when unset; a clear error when it is not one."""
    value = _env(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"JAMBADOCS_{name}={value!r} is not {what}") from None


# The longest answer a question may ask for (`ask --max-new-tokens`, the API's max_new_tokens,
# JAMBADOCS_MAX_NEW_TOKENS), one rule with or without a server; the model's context may allow less.
MAX_NEW_TOKENS = 32768


def check_max_new_tokens(value: object) -> None:
    """The one rule for a requested answer length: a whole number from 1 to MAX_NEW_TOKENS, or
    None (the settings' own); InvalidInput otherwise. The model's context may then allow less."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 1 <= value <= MAX_NEW_TOKENS):
        raise InvalidInput(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, got {value!r}")

# integer settings (JAMBADOCS_<NAME> in the environment), each positive
POSITIVE_INTS = ("cache_bytes", "reserve_bytes", "max_upload_bytes", "max_pages", "max_new_tokens", "max_thinking_tokens")


@dataclass(frozen=True)
class Settings:
    """What the app runs with. `Settings.from_env(**overrides)` is the usual way to build one."""

    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("jambadocs")))
    model: str | None = None           # checkpoint folder or hub id; None -> extractive engine
    device: str | None = None          # "cpu" / "cuda" / None (auto)
    dtype: str | None = None           # "float32" / "bfloat16" / "float16" / None (engine default)
    quantize: str | None = None        # "int8": ExpertsInt8 (expert + MLP weights) at load time
    engine: str = "auto"               # auto | extractive | jamba | remote
    remote_url: str | None = None      # OpenAI-compatible server for the remote engine
    remote_model: str | None = None
    remote_api_key: str | None = field(default=None, repr=False)   # secret: kept out of repr/logs
    cache_bytes: int = 8 * 1024**3     # state-store byte budget
    # Room kept on the data folder's disk for deletes (app.filestore.SpaceReserve): a delete writes
    # about a tenth of the page text it removes to the WAL (bench/storage_space.py), so the default
    # covers deleting some 300 MB of page text at once on a full disk.
    reserve_bytes: int = 32 * 1024**2
    max_upload_bytes: int = 200 * 1024**2
    max_pages: int = 5000
    max_new_tokens: int = 512
    max_thinking_tokens: int = 4096    # reasoning models: their <think> block, on top of max_new_tokens
    # Decoding. None: what the checkpoint's generation_config.json recommends (greedy unless it sets
    # do_sample); temperature 0 is greedy. A sampled answer's seed is in its timings; `seed` fixes it.
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    models_path: Path | None = None    # where `download` puts checkpoints; None -> <data_dir>/models

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.models_path is not None:
            object.__setattr__(self, "models_path", Path(self.models_path).expanduser())
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r} is not one of {', '.join(ENGINES)}")
        for name in POSITIVE_INTS:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_new_tokens > MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be from 1 to {MAX_NEW_TOKENS}, got {self.max_new_tokens}")
        if self.temperature is not None and not 0 <= self.temperature <= 100:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Defaults <- JAMBADOCS_* env vars <- overrides (None values in overrides are ignored)."""
        values: dict = {}
        if (d := _env("DATA_DIR")) is not None:
            values["data_dir"] = Path(d)
        if (d := _env("MODELS_DIR")) is not None:
            values["models_path"] = Path(d)
        for name in ("model", "device", "dtype", "quantize", "engine", "remote_url", "remote_model", "remote_api_key"):
            if (v := _env(name.upper())) is not None:
                values[name] = v
        for name, kind in (("temperature", float), ("top_p", float), ("seed", int)):
            if (number := _env_number(name.upper(), kind)) is not None:
                values[name] = number
        defaults = cls.__dataclass_fields__
        for name in POSITIVE_INTS:
            number = _env_number(name.upper())
            values[name] = defaults[name].default if number is None else number
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise TypeError(f"unknown setting {key!r}")
            if value is not None:
                values[key] = value
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    # Paths inside the data folder
    @property
    def db_path(self) -> Path:
        return self.data_dir / "jambadocs.sqlite3"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def models_dir(self) -> Path:
        """Downloaded checkpoints (JAMBADOCS_MODELS_DIR; default <data dir>/models)."""
        return self.models_path if self.models_path is not None else self.data_dir / "models"

    def resolved_engine(self) -> str:
        """The engine 'auto' stands for: jamba when a model is set, remote when a URL is, else extractive."""
        if self.engine != "auto":
            return self.engine
        if self.model:
            return "jamba"
        if self.remote_url:
            return "remote"
        return "extractive"
