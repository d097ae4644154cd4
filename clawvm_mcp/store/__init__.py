"""Persistence behind a narrow protocol (``Store``); SQLite via aiosqlite is the embedded default."""

from .base import Store, StoreError
from .sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store", "StoreError"]
