"""Command-line options more than one verb takes, defined once so their defaults and help never drift."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from .engine.policy import Grant
from .paths import default_db_path


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", type=Path, default=None, help=f"SQLite database file (default: $CLAWVM_DB or {default_db_path()})"
    )


def db_path(args: argparse.Namespace) -> Path:
    return args.db if args.db is not None else default_db_path()


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
