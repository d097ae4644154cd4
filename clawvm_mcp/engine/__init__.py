"""The ClawVM engine: lifecycle operations over typed pages (no MCP imports)."""

from .core import ClawVMEngine, EngineError, PageInput
from .policy import CLAWVM, EngineConfig, EnginePolicy

__all__ = ["CLAWVM", "ClawVMEngine", "EngineConfig", "EngineError", "EnginePolicy", "PageInput"]
