"""Where the embedded database lives when --db is not given, and how long a write may wait for it."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_db_path() -> Path:
    """CLAWVM_DB, else the platform's per-user data directory (created on first run)."""
    if env := os.environ.get("CLAWVM_DB"):
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "clawvm-mcp" / "memory.db"


DEFAULT_STORE_TIMEOUT = 5.0


def store_timeout() -> float:
    """CLAWVM_STORE_TIMEOUT (seconds, > 0), else 5: how long a write waits for the store before STORE_BUSY."""
    raw = os.environ.get("CLAWVM_STORE_TIMEOUT")
    if not raw:
        return DEFAULT_STORE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ValueError(f"CLAWVM_STORE_TIMEOUT must be a number of seconds in (0, 3600], got {raw!r}")
    return value
