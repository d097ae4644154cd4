"""One way to open a store from what ``--db`` says: a file path is SQLite, a postgresql:// URL is PostgreSQL, and
any other URL is refused rather than taken for a folder name."""

from __future__ import annotations

import re
from pathlib import Path

from .base import Store, StoreError
from .sqlite import SQLiteStore

# a URL scheme; argparse's Path() folds "postgresql://h/db" to "postgresql:/h/db", so one slash is enough here.
# One letter before the colon is a Windows drive (C:\...), not a scheme
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/")
POSTGRES_SCHEMES = ("postgresql", "postgres")


def database_url(db: str | Path) -> str | None:
    """The URL ``db`` names (the ``//`` a Path folded restored), or None when it is a file path."""
    text = str(db)
    m = _SCHEME.match(text)
    if m is None:
        return None
    rest = text[m.end() :]
    return f"{m['scheme']}://{rest.lstrip('/')}" if isinstance(db, Path) or not rest.startswith("/") else text


async def open_store(db: str | Path, timeout: float | None = None) -> Store:
    """Open the store ``db`` names: SQLiteStore for a file path, PostgresStore for postgresql:// (or postgres://);
    another scheme, or PostgreSQL without asyncpg installed, is a StoreError with one clear line."""
    url = database_url(db)
    if url is None:
        return await SQLiteStore.open(db, timeout)
    scheme = url.split(":", 1)[0].lower()
    if scheme not in POSTGRES_SCHEMES:
        raise StoreError(
            f"--db {scheme}://... is not a database clawvm-mcp can open: give a SQLite file path or a postgresql:// URL"
        )
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"--db {scheme}://... needs asyncpg ({exc}); install it with: pip install 'clawvm-mcp[postgres]'"
        ) from exc
    return await PostgresStore.open(url, timeout)
