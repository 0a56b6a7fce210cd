"""Bundled Jamba engine: exact Jamba forward on CPU/GPU with resumable hybrid states."""
from .config import JambaConfig
from .engine import Engine, load_engine
from .errors import CheckpointError, EngineError, StateError
from .generate import Generation
from .model import Cancelled
from .state import HybridState, state_bytes

__all__ = ["load_engine", "Engine", "HybridState", "EngineError", "CheckpointError", "StateError",
           "JambaConfig", "Generation", "Cancelled", "state_bytes"]
