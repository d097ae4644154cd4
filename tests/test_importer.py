"""The OpenClaw-style workspace importer: parsing, type mapping, provenance, idempotent re-import (issue 6)."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from clawvm_mcp.engine import ClawVMEngine, EngineError
from clawvm_mcp.importer import (
    ImportReport,
    Section,
    import_workspace,
    is_rule_section,
    plan_file,
    register,
    split_sections,
)
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Page, Provenance
from clawvm_mcp.store import SQLiteStore

pytestmark = pytest.mark.anyio

AGENTS = """\
# AGENTS.md - Your Workspace

This folder is home. Treat it that way.

## Every Session

Before doing anything else:
1. Read `SOUL.md`
2. Read `USER.md`

## Red Lines

- Don't exfiltrate private data. Ever.
- Don't run destructive commands without asking.

```bash
# a comment in a fence, not a heading
echo hi
```
"""
SOUL = "# SOUL.md - Who You Are\n\nBe genuinely helpful, not performatively helpful.\nHave opinions.\n"
USER = "# USER.md\n\n- Name: Ada\n- Timezone: Europe/Berlin\n\n## Communication\n\nShort answers. No emojis.\n"
MEMORY = """\
# MEMORY.md

## Deploy rules
- never deploy on Fridays
- always run the migration dry-run first

## Projects

- clawvm: memory server, Python 3.11
- likes tea

### Notes
deeper headings stay inside their section
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    for name, text in {"AGENTS.md": AGENTS, "SOUL.md": SOUL, "USER.md": USER, "MEMORY.md": MEMORY}.items():
        (ws / name).write_text(text, encoding="utf-8")
    (ws / "README.md").write_text("# not a workspace file\n\nignored\n", encoding="utf-8")
    return ws


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[ClawVMEngine]:
    store = await SQLiteStore.open(tmp_path / "memory.db")
    try:
        yield ClawVMEngine(store)
    finally:
        await store.close()


def by_id(report: ImportReport) -> dict[str, str]:
    return {p.page_id: p.action for p in report.pages}


# ------------------------------------------------------------------------------------------------ parsing


def test_sections_split_at_h1_h2_outside_fences_with_heading_lines() -> None:
    sections = split_sections(AGENTS)
    assert [(s.heading, s.line) for s in sections] == [
        ("AGENTS.md - Your Workspace", 1),
        ("Every Session", 5),
        ("Red Lines", 11),
    ]
    assert sections[2].text.startswith("## Red Lines\n- Don't exfiltrate")
    assert "# a comment in a fence, not a heading" in sections[2].text
    assert sections[2].text.endswith("```")  # trailing blank lines dropped


def test_intro_text_keeps_its_first_line_and_empty_sections_are_dropped() -> None:
    sections = split_sections("\n\nLoose text first.\n# Title\n\n## Empty\n\n## Full\nbody\n")
    assert [(s.heading, s.line, s.text) for s in sections] == [
        (None, 3, "Loose text first."),
        ("Full", 8, "## Full\nbody"),
    ]


def test_deeper_headings_stay_inside_their_section() -> None:
    (_, projects) = split_sections(MEMORY)
    assert projects.heading == "Projects" and "### Notes" in projects.text


def test_file_types_ids_and_provenance() -> None:
    agents = plan_file("AGENTS.md", AGENTS, "bootstrap")
    assert [(p.page_id, p.type, p.ref) for p in agents] == [
        ("ws/agents/agents-md-your-workspace", "bootstrap", "ext:AGENTS.md#L1"),
        ("ws/agents/every-session", "bootstrap", "ext:AGENTS.md#L5"),
        ("ws/agents/red-lines", "bootstrap", "ext:AGENTS.md#L11"),
    ]
    user = plan_file("USER.md", USER, "preference")
    assert [p.type for p in user] == ["preference", "preference"]
    assert user[1].fields == {
        "key": "Communication",
        "value": "Short answers. No emojis.",
        "scope_note": "imported from USER.md",
    }
    assert user[0].fields is not None and user[0].fields["value"] == "Name: Ada Timezone: Europe/Berlin"


def test_memory_sections_split_into_constraints_and_preferences() -> None:
    pages = plan_file("MEMORY.md", MEMORY, "memory")
    assert [(p.page_id, p.type) for p in pages] == [
        ("ws/memory/deploy-rules", "constraint"),
        ("ws/memory/projects", "preference"),
    ]
    assert pages[0].fields is None  # a constraint's rule/applies_to derive from its text


@pytest.mark.parametrize(
    ("heading", "body", "rule"),
    [
        ("Red lines", "- be kind", True),
        ("Hard constraints", "text", True),
        ("Notes", "- Never force-push\n- Always sign commits\n- tea", True),
        ("Notes", "- never on Fridays\n- likes tea\n- lives in Berlin", False),
        ("Notes", "Never mind, just prose.", False),
        (None, "- Don't page on weekends", True),
    ],
)
def test_rule_sections(heading: str | None, body: str, rule: bool) -> None:
    assert is_rule_section(Section(heading, 1, f"## {heading}\n{body}" if heading else body)) is rule


def test_repeated_and_unsluggable_headings_get_distinct_ids() -> None:
    pages = plan_file("SOUL.md", "## Tone\na\n## Tone\nb\n## 🙂\nc\nintro-less\n", "bootstrap")
    assert [p.page_id for p in pages] == ["ws/soul/tone", "ws/soul/tone-2", "ws/soul/section-l5"]


async def pages_of(engine: ClawVMEngine, session_id: str) -> dict[str, Page]:
    return {p.page_id: p for p in await engine.pages(session_id)}


# ------------------------------------------------------------------------------------------------ importing


async def test_import_writes_project_pages_through_the_journal(engine: ClawVMEngine, workspace: Path) -> None:
    report = await import_workspace(engine, "s1", workspace)
    assert report.files == ["AGENTS.md", "SOUL.md", "USER.md", "MEMORY.md"]
    assert report.ok and report.count("created") == len(report.pages) == 8
    pages = await pages_of(engine, "s1")
    red = pages["ws/agents/red-lines"]
    assert (red.type, red.pin, red.scope, red.version) == ("bootstrap", "hard", "project", 1)
    assert (red.provenance.source, red.provenance.ref) == ("import", "ext:AGENTS.md#L11")
    rule = pages["ws/memory/deploy-rules"]
    assert (rule.type, rule.pin, rule.scope) == ("constraint", "hard", "project")
    assert pages["ws/user/communication"].fields["key"] == "Communication"
    counts = await engine.store.journal_counts("s1")
    assert counts == {"committed": 8}


async def test_reimport_is_idempotent_and_updates_with_base_version(engine: ClawVMEngine, workspace: Path) -> None:
    await import_workspace(engine, "s1", workspace)
    again = await import_workspace(engine, "s1", workspace)
    assert set(by_id(again).values()) == {"unchanged"}
    assert await engine.store.journal_counts("s1") == {"committed": 8}  # nothing rewritten, no journal rows

    (workspace / "SOUL.md").write_text(SOUL + "Be concise.\n", encoding="utf-8")
    changed = await import_workspace(engine, "s1", workspace)
    assert by_id(changed)["ws/soul/soul-md-who-you-are"] == "updated"
    assert [p.action for p in changed.pages].count("unchanged") == 7
    soul = (await pages_of(engine, "s1"))["ws/soul/soul-md-who-you-are"]
    assert soul.version == 2 and soul.content.endswith("Be concise.")
    last = (await engine.store.journal("s1", 1))[0]
    assert (last.op, last.status, last.request["base_version"]) == ("set", "committed", 1)


async def test_a_moved_section_gets_its_new_line(engine: ClawVMEngine, workspace: Path) -> None:
    await import_workspace(engine, "s1", workspace)
    (workspace / "USER.md").write_text("<!-- about the user -->\n" + USER, encoding="utf-8")
    report = await import_workspace(engine, "s1", workspace)
    assert by_id(report)["ws/user/communication"] == "updated"
    assert (await pages_of(engine, "s1"))["ws/user/communication"].provenance.ref == "ext:USER.md#L7"


async def test_memory_section_changing_type_is_retyped(engine: ClawVMEngine, workspace: Path) -> None:
    await import_workspace(engine, "s1", workspace)
    swapped = (
        MEMORY.replace("## Deploy rules", "## Deploy notes")
        .replace("- never deploy on Fridays\n- always run", "- deploys happen on Tuesdays\n- the dry-run")
        .replace("## Projects", "## Project rules")
    )
    (workspace / "MEMORY.md").write_text(swapped, encoding="utf-8")
    report = await import_workspace(engine, "s1", workspace)
    actions = by_id(report)
    assert actions["ws/memory/deploy-notes"] == "created"
    assert actions["ws/memory/project-rules"] == "created"
    assert report.stale == ["ws/memory/deploy-rules", "ws/memory/projects"]

    (workspace / "MEMORY.md").write_text(
        MEMORY.replace("- likes tea", "- never push on main\n- always rebase"), encoding="utf-8"
    )
    report = await import_workspace(engine, "s1", workspace)
    assert by_id(report)["ws/memory/projects"] == "retyped"
    page = (await pages_of(engine, "s1"))["ws/memory/projects"]
    assert (page.type, page.pin, page.version) == ("constraint", "hard", 3)  # v1 preference, v2 tombstone, v3


async def test_a_constraint_becoming_a_preference_is_unpinned_first(engine: ClawVMEngine, workspace: Path) -> None:
    rules = MEMORY.replace("## Projects\n", "## Habits\n- never deploy late\n- always pair\n\n## Projects\n")
    (workspace / "MEMORY.md").write_text(rules, encoding="utf-8")
    await import_workspace(engine, "s1", workspace)
    assert (await pages_of(engine, "s1"))["ws/memory/habits"].type == "constraint"
    (workspace / "MEMORY.md").write_text(
        rules.replace("- never deploy late\n- always pair", "- tea at four"), encoding="utf-8"
    )
    report = await import_workspace(engine, "s1", workspace)
    assert by_id(report)["ws/memory/habits"] == "retyped"
    page = (await pages_of(engine, "s1"))["ws/memory/habits"]
    assert (page.type, page.pin, page.version) == ("preference", "none", 4)  # v2 unpinned, v3 tombstone, v4
    ops = [(e.op, e.status) for e in await engine.store.journal("s1", 50) if e.page_id == "ws/memory/habits"]
    assert ops == [("create", "committed"), ("pin", "committed"), ("delete", "committed"), ("create", "committed")]


async def test_pages_are_shared_with_the_projects_other_sessions(engine: ClawVMEngine, workspace: Path) -> None:
    await import_workspace(engine, "importer", workspace, project_id="acme")
    await engine.session_start("worker", "acme")
    assembly = await engine.assemble("worker", 400)
    assert "Don't exfiltrate private data" in assembly.prompt
    assert "never deploy on Fridays" in assembly.prompt
    again = await import_workspace(engine, "worker", workspace)  # another session of the project: all unchanged
    assert set(by_id(again).values()) == {"unchanged"}


async def test_floors_over_the_budget_are_rejected_with_reasons(engine: ClawVMEngine, workspace: Path) -> None:
    report = await import_workspace(engine, "tiny", workspace, budget=60)
    assert not report.ok
    rejected = [p for p in report.pages if p.action == "rejected"]
    assert rejected and all(r.startswith("INVARIANT_VIOLATION") for p in rejected for r in p.reasons)
    assert any(p.action == "created" for p in report.pages)  # what fits is still imported


async def test_a_bootstrap_page_is_never_retyped(engine: ClawVMEngine, workspace: Path) -> None:
    await engine.session_start("s1")
    await engine.write(
        "s1",
        WriteRequest(
            "create",
            "ws/user/communication",
            Provenance("user", "ext:chat", 0),
            "bootstrap",
            "# Talk\n- be brief",
            scope="project",
        ),
    )
    report = await import_workspace(engine, "s1", workspace)
    (page,) = [p for p in report.pages if p.page_id == "ws/user/communication"]
    assert page.action == "rejected" and "bootstrap page" in page.reasons[0]
    assert (await pages_of(engine, "s1"))["ws/user/communication"].type == "bootstrap"
    assert not report.ok


async def test_an_empty_directory_is_an_error(engine: ClawVMEngine, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no workspace files"):
        await import_workspace(engine, "s1", tmp_path)


# ------------------------------------------------------------------------------------------------ CLI


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="clawvm-mcp")
    register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(list(argv))
    code = args.func(args)
    assert isinstance(code, int)
    return code


def test_cli_imports_and_reports(workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    assert run_cli("import", "--session", "s1", "--db", db, str(workspace)) == 0
    out = capsys.readouterr().out
    assert "created    ws/agents/red-lines" in out and "ext:AGENTS.md#L11" in out
    assert out.strip().endswith("8 created, 0 updated, 0 retyped, 0 unchanged, 0 rejected")
    assert run_cli("import", "--session", "s1", "--db", db, "--json", str(workspace)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["unchanged"] == 8 and report["stale"] == []


def test_cli_exit_codes(workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    assert run_cli("import", "--session", "s1", "--db", db, str(tmp_path / "missing")) == 2
    assert "is not a directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("import", "--session", "s1", "--db", db, str(empty)) == 2
    assert "no workspace files" in capsys.readouterr().err
    assert run_cli("import", "--session", "s2", "--db", db, "--budget", "60", str(workspace)) == 1
    captured = capsys.readouterr()
    assert "rejected" in captured.out and "--budget" in captured.err
    assert run_cli("import", "--session", "s1", "--db", db, "--project", "bad id!", str(workspace)) == 2


def test_files_with_a_bom_and_lowercase_names(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "agents.md").write_bytes("\ufeff# Rules\n- be brief\n".encode())

    async def go() -> ImportReport:
        store = await SQLiteStore.open(tmp_path / "bom.db")
        try:
            return await import_workspace(ClawVMEngine(store), "s1", ws)
        finally:
            await store.close()

    report = anyio.run(go)
    assert [(p.page_id, p.ref) for p in report.pages] == [("ws/agents/rules", "ext:agents.md#L1")]
