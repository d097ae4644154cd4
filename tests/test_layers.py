"""The import directions of docs/design.md, enforced: the domain never imports ``mcp``; nothing in ``engine/``
imports the facade; the rule modules import neither the store nor the engine; the store imports no engine; the
engine imports no adapter. A new module that breaks a direction fails here, naming the import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clawvm_mcp"
RULES = ("pages", "represent", "selector", "journal", "faults", "tokens", "page_table", "cost_order", "canonical")
# the adapters: MCP wiring, MCP clients, and the verbs that drive them
MCP_ADAPTERS = (
    "server/",
    "harness/adapter.py",
    "replay/mcp_backend.py",
    "replay/bench.py",
    "cli.py",
    "replay/bench_recall.py",
    "replay/bench_scaling.py",
)


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved against its package)."""
    package = _module(path).split(".") if path.name == "__init__.py" else _module(path).split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)  # ``from . import assembly`` names a module
    return out


def sources(under: str = "") -> list[Path]:
    return sorted(p for p in (PACKAGE / under).rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _hits(path: Path, prefix: str) -> list[str]:
    return sorted(m for m in imports_of(path) if m == prefix or m.startswith(prefix + "."))


def test_the_domain_never_imports_mcp() -> None:
    bad = {
        _rel(p): _hits(p, "mcp")
        for p in sources()
        if not any(_rel(p).startswith(a) for a in MCP_ADAPTERS) and _hits(p, "mcp")
    }
    assert bad == {}


def test_nothing_in_the_engine_imports_the_facade() -> None:
    parts = [p for p in sources("engine") if p.name not in ("core.py", "__init__.py")]
    assert len(parts) >= 8  # session, writeback, assembly, reads, tool_calls, lifecycle, views, coherence, ...
    bad = {_rel(p): _hits(p, "clawvm_mcp.engine.core") for p in parts if _hits(p, "clawvm_mcp.engine.core")}
    bad |= {_rel(p): ["clawvm_mcp.engine"] for p in parts if "clawvm_mcp.engine" in imports_of(p)}
    assert bad == {}


@pytest.mark.parametrize("rule", RULES)
def test_rule_modules_import_neither_store_nor_engine(rule: str) -> None:
    path = PACKAGE / f"{rule}.py"
    assert _hits(path, "clawvm_mcp.store") == [] and _hits(path, "clawvm_mcp.engine") == []


def test_the_store_imports_no_engine_and_no_adapter() -> None:
    for path in sources("store"):
        for layer in ("engine", "server", "harness", "replay"):
            assert _hits(path, f"clawvm_mcp.{layer}") == [], _rel(path)


def test_the_engine_imports_no_adapter() -> None:
    for path in sources("engine"):
        for layer in ("server", "harness", "replay", "cli", "bench", "importer", "inspect"):
            assert _hits(path, f"clawvm_mcp.{layer}") == [], _rel(path)


def test_the_check_sees_relative_imports() -> None:
    """The checks above are only as good as the import reader: it must resolve ``from ..x import y``."""
    found = imports_of(PACKAGE / "engine" / "coherence.py")
    assert "clawvm_mcp.engine.writeback" in found and "clawvm_mcp.store.base" in found
