"""Where the embedded database lives when --db is not given."""

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
