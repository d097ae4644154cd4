"""Command-line options more than one verb takes, defined once so their defaults and help never drift."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from .engine.policy import Grant
from .paths import default_db_path
from .store.open import database_url


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=db_arg,
        default=None,
        help=f"SQLite database file or postgresql:// URL (default: $CLAWVM_DB or {default_db_path()})",
    )


def db_arg(text: str) -> Path | str:
    """A URL is kept as typed: a Path would fold ``postgresql:///db?host=/sock`` into something else."""
    return text if database_url(text) is not None else Path(text)


def db_path(args: argparse.Namespace) -> Path | str:
    db: Path | str | None = args.db
    return db if db is not None else default_db_path()


def add_principal(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--principal",
        default=os.environ.get("CLAWVM_PRINCIPAL", "local"),
        help="who is writing (default: $CLAWVM_PRINCIPAL or 'local')",
    )


def add_grants(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="PROJECT=read|write",
        help="limit this principal to these project grants (default: write on every project)",
    )


def grants(values: Sequence[str]) -> dict[str, Grant] | None:
    if not values:
        return None
    out: dict[str, Grant] = {}
    for item in values:
        project, _, level = item.partition("=")
        if not project or level not in ("read", "write"):
            raise SystemExit(f"Error: --grant takes PROJECT=read or PROJECT=write, got {item!r}")
        out[project] = "write" if level == "write" else "read"
    return out
