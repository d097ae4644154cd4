"""The project's docs stand on their own (issue 15): the public contract lives in the repository
(docs/contract.md, with section 9), and no doc points at the old out-of-tree DESIGN.md or names a path of the
machine they were written on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "the old out-of-tree contract": re.compile(r"DESIGN\.md"),
    "a path on the machine the docs were written on": re.compile(r"/work/|/root/|shared/reference"),
}
TEXT = {".md", ".py", ".json", ".toml", ".sh", ".txt", ".yml", ".yaml"}
# install lines that name the bare package work only once it is on PyPI (it is not yet)
REGISTRY_ONLY = re.compile(r"(uvx|uv tool install|pipx install|pip install) clawvm-mcp\b")
CHECKOUT = re.compile(r"uvx --from \S+ clawvm-mcp|uv tool install \.")


def documents() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "server.json"]
    for folder in ("docs", "examples", "integrations"):
        found += [p for p in sorted((ROOT / folder).rglob("*")) if p.is_file() and (p.suffix in TEXT or not p.suffix)]
    return [p for p in found if p.exists()]


def test_no_doc_points_outside_the_repository() -> None:
    hits = []
    for path in documents():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            hits += [f"{path.relative_to(ROOT)}:{number}: {why}" for why, rx in FORBIDDEN.items() if rx.search(line)]
    assert hits == []


def test_the_scan_covers_the_docs() -> None:
    names = {str(p.relative_to(ROOT)) for p in documents()}
    assert {"README.md", "docs/contract.md", "docs/design.md", "examples/demo.py"} <= names


def test_the_contract_is_in_the_repository_with_revision_2() -> None:
    contract = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\d+)\. ", contract, flags=re.MULTILINE)
    assert headings == [str(n) for n in range(1, 10)]
    assert "## 9. Revision 2" in contract and "where they differ, this section stands" in contract
    for name in ("session_start", "context_assemble", "clawvm://sessions/{session_id}/context{?budget}", "STORE_BUSY"):
        assert name in contract, name


def test_docs_name_only_docs_that_exist() -> None:
    missing = [
        f"{path.relative_to(ROOT)} names {ref}"
        for path in documents()
        for ref in sorted(set(re.findall(r"\bdocs/[\w.-]+\.md\b", path.read_text(encoding="utf-8"))))
        if not (ROOT / ref).exists()
    ]
    assert missing == []


def test_registry_only_install_lines_say_so_and_give_the_line_for_today() -> None:
    """A hook that runs `clawvm-mcp` after a registry-only install line finds `clawvm-mcp: not found`; every doc,
    example and hook message is checked, the hook wrapper's not-found messages included."""
    for path in documents():
        name = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        if not REGISTRY_ONLY.search(text):
            continue
        blocks = re.split(r"\n\s*\n", text)
        unsaid = [b.strip()[:80] for b in blocks if REGISTRY_ONLY.search(b) and "PyPI" not in b]
        assert unsaid == [], f"{name}: registry-only install lines that do not say so: {unsaid}"
        assert CHECKOUT.search(text), f"{name} gives no install line that works from a checkout"


def test_the_install_check_sees_a_bare_line() -> None:
    assert REGISTRY_ONLY.search("run `uv tool install clawvm-mcp` first") and not CHECKOUT.search("uvx clawvm-mcp")


def test_docs_name_only_examples_and_integrations_that_exist() -> None:
    """examples/claude_code/ moved to integrations/claude-code/: no doc may send a reader to a path that is gone."""
    missing = [
        f"{path.relative_to(ROOT)} names {ref}"
        for path in documents()
        for ref in sorted(
            set(re.findall(r"\b(?:examples|integrations)/[\w./-]*[\w/]", path.read_text(encoding="utf-8")))
        )
        if not (ROOT / ref).exists()
    ]
    assert missing == []
