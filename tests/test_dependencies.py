"""Every third-party module the package imports is a declared dependency (issue 15: server/http.py imported
uvicorn and starlette, which only arrived because mcp happened to depend on them)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clawvm_mcp"


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = {_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    return {_name(r) for r in project["dependencies"]}, extras


def _guarded(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside ``try: ... except ImportError`` (optional extras)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            lines |= {
                n.lineno for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)
            }
    return lines


def imported() -> dict[str, tuple[str, bool]]:
    """Top-level third-party module -> (first file importing it, whether every such import is guarded)."""
    found: dict[str, tuple[str, bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = _guarded(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("clawvm_mcp", "__future__"):
                    continue
                where, was_guarded = found.get(top, (str(path.relative_to(ROOT)), True))
                found[top] = (where, was_guarded and node.lineno in guarded)
    return found


def test_every_imported_distribution_is_declared() -> None:
    required, optional = declared()
    dists = packages_distributions()
    missing = []
    for module, (where, guarded) in sorted(imported().items()):
        names = {_name(d) for d in dists.get(module, [module])}
        if not names & (optional if guarded else required):
            missing.append(f"{module} (imported by {where}{', optional' if guarded else ''})")
    assert missing == [], f"imported but not declared in pyproject.toml: {missing}"


def test_the_scan_sees_the_http_transport_imports() -> None:
    """The check above is only as good as its scan: it must see server/http.py's own imports."""
    found = imported()
    assert found["uvicorn"][1] is False and found["starlette"][1] is False  # server/http.py, unguarded
    assert found["matplotlib"][1] is True
