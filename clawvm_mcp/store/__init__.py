"""Persistence behind a narrow protocol (``Store``); SQLite via aiosqlite is the embedded default, PostgreSQL
(asyncpg, the ``postgres`` extra) the shared one; ``open_store`` picks by what ``--db`` names."""

from .base import Store, StoreError
from .open import open_store
from .sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store", "StoreError", "open_store"]
