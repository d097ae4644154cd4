"""The ClawVM engine: lifecycle operations over typed pages (no MCP imports)."""

from .core import ClawVMEngine
from .policy import CLAWVM, EngineConfig, EnginePolicy
from .session import EngineError, PageInput, SavedState, SessionState

__all__ = [
    "CLAWVM",
    "ClawVMEngine",
    "EngineConfig",
    "EngineError",
    "EnginePolicy",
    "PageInput",
    "SavedState",
    "SessionState",
]
