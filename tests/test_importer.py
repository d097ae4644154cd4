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
        ("ws/agents/001", "bootstrap", "ext:AGENTS.md#L1"),
        ("ws/agents/002", "bootstrap", "ext:AGENTS.md#L5"),
        ("ws/agents/003", "bootstrap", "ext:AGENTS.md#L11"),
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
        ("ws/memory/001", "constraint"),
        ("ws/memory/002", "preference"),
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


def test_ids_are_ordinals_so_repeated_and_unsluggable_headings_are_distinct() -> None:
    pages = plan_file("SOUL.md", "## Tone\na\n## Tone\nb\n## 🙂\nc\nintro-less\n", "bootstrap")
    assert [(p.page_id, p.ref) for p in pages] == [
        ("ws/soul/001", "ext:SOUL.md#L1"),
        ("ws/soul/002", "ext:SOUL.md#L3"),
        ("ws/soul/003", "ext:SOUL.md#L5"),
    ]


async def pages_of(engine: ClawVMEngine, session_id: str) -> dict[str, Page]:
    return {p.page_id: p for p in await engine.pages(session_id)}


# ------------------------------------------------------------------------------------------------ importing


async def test_import_writes_project_pages_through_the_journal(engine: ClawVMEngine, workspace: Path) -> None:
    report = await import_workspace(engine, "s1", workspace)
    assert report.files == ["AGENTS.md", "SOUL.md", "USER.md", "MEMORY.md"]
    assert report.ok and report.count("created") == len(report.pages) == 8
    pages = await pages_of(engine, "s1")
    red = pages["ws/agents/003"]
    assert (red.type, red.pin, red.scope, red.version) == ("bootstrap", "hard", "project", 1)
    assert (red.provenance.source, red.provenance.ref) == ("import", "ext:AGENTS.md#L11")
    rule = pages["ws/memory/001"]
    assert (rule.type, rule.pin, rule.scope) == ("constraint", "hard", "project")
    assert pages["ws/user/002"].fields["key"] == "Communication"
    counts = await engine.store.journal_counts("s1")
    assert counts == {"committed": 8}


async def test_reimport_is_idempotent_and_updates_with_base_version(engine: ClawVMEngine, workspace: Path) -> None:
    await import_workspace(engine, "s1", workspace)
    again = await import_workspace(engine, "s1", workspace)
    assert set(by_id(again).values()) == {"unchanged"}
    assert await engine.store.journal_counts("s1") == {"committed": 8}  # nothing rewritten, no journal rows

    (workspace / "SOUL.md").write_text(SOUL + "Be concise.\n", encoding="utf-8")
    changed = await import_workspace(engine, "s1", workspace)
    assert by_id(changed)["ws/soul/001"] == "updated"
    assert [p.action for p in changed.pages].count("unchanged") == 7
    soul = (await pages_of(engine, "s1"))["ws/soul/001"]
    assert soul.version == 2 and soul.content.endswith("Be concise.")
    last = (await engine.store.journal("s1", 1))[0]
    assert (last.op, last.status, last.request["base_version"]) == ("set", "committed", 1)


async def test_a_moved_section_gets_its_new_line(engine: ClawVMEngine, workspace: Path) -> None:
    await import_workspace(engine, "s1", workspace)
    (workspace / "USER.md").write_text("<!-- about the user -->\n" + USER, encoding="utf-8")
    report = await import_workspace(engine, "s1", workspace)
    # the comment is a new first section; the others move down one ordinal, each page updated in place
    user = {k: v for k, v in by_id(report).items() if k.startswith("ws/user/")}
    assert user == {"ws/user/001": "updated", "ws/user/002": "updated", "ws/user/003": "created"}
    assert (await pages_of(engine, "s1"))["ws/user/003"].provenance.ref == "ext:USER.md#L7"


async def test_memory_section_changing_type_is_retyped(engine: ClawVMEngine, workspace: Path) -> None:
    await import_workspace(engine, "s1", workspace)
    swapped = (
        MEMORY.replace("## Deploy rules", "## Deploy notes")
        .replace("- never deploy on Fridays\n- always run", "- deploys happen on Tuesdays\n- the dry-run")
        .replace("## Projects", "## Project rules")
    )
    (workspace / "MEMORY.md").write_text(swapped, encoding="utf-8")
    report = await import_workspace(engine, "s1", workspace)
    assert by_id(report)["ws/memory/001"] == by_id(report)["ws/memory/002"] == "retyped"
    assert report.stale == []
    pages = await pages_of(engine, "s1")
    assert (pages["ws/memory/001"].type, pages["ws/memory/001"].pin) == ("preference", "none")
    assert (pages["ws/memory/002"].type, pages["ws/memory/002"].pin) == ("constraint", "hard")

    (workspace / "MEMORY.md").write_text(
        MEMORY.replace("- likes tea", "- never push on main\n- always rebase"), encoding="utf-8"
    )
    report = await import_workspace(engine, "s1", workspace)
    assert by_id(report)["ws/memory/002"] == "unchanged" or by_id(report)["ws/memory/002"] == "updated"
    assert by_id(report)["ws/memory/001"] == "retyped"
    page = (await pages_of(engine, "s1"))["ws/memory/002"]
    assert (page.type, page.pin) == ("constraint", "hard")
    assert "never push on main" in page.content


async def test_a_constraint_becoming_a_preference_is_unpinned_first(engine: ClawVMEngine, workspace: Path) -> None:
    rules = MEMORY.replace("## Projects\n", "## Habits\n- never deploy late\n- always pair\n\n## Projects\n")
    (workspace / "MEMORY.md").write_text(rules, encoding="utf-8")
    await import_workspace(engine, "s1", workspace)
    assert (await pages_of(engine, "s1"))["ws/memory/002"].type == "constraint"
    (workspace / "MEMORY.md").write_text(
        rules.replace("- never deploy late\n- always pair", "- tea at four"), encoding="utf-8"
    )
    report = await import_workspace(engine, "s1", workspace)
    assert by_id(report)["ws/memory/002"] == "retyped"
    page = (await pages_of(engine, "s1"))["ws/memory/002"]
    assert (page.type, page.pin, page.version) == ("preference", "none", 4)  # v2 unpinned, v3 tombstone, v4
    ops = [(e.op, e.status) for e in await engine.store.journal("s1", 50) if e.page_id == "ws/memory/002"]
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
            "ws/user/002",
            Provenance("user", "ext:chat", 0),
            "bootstrap",
            "# Talk\n- be brief",
            scope="project",
        ),
    )
    report = await import_workspace(engine, "s1", workspace)
    (page,) = [p for p in report.pages if p.page_id == "ws/user/002"]
    assert page.action == "rejected" and "bootstrap page" in page.reasons[0]
    assert (await pages_of(engine, "s1"))["ws/user/002"].type == "bootstrap"
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
    assert "created    ws/agents/003" in out and "ext:AGENTS.md#L11" in out
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
    assert [(p.page_id, p.ref) for p in report.pages] == [("ws/agents/001", "ext:agents.md#L1")]


# ------------------------------------------------------------------------------------------------ issue 14

USER_CONTEXT = "# USER.md\n\n- Name: Ada\n\n## Context\n\nWorks on compilers.\n\n## About\n\nLikes tea.\n"


async def test_sections_reach_the_prompt_in_file_order(engine: ClawVMEngine, tmp_path: Path) -> None:
    ws = tmp_path / "order"
    ws.mkdir()
    (ws / "USER.md").write_text(USER_CONTEXT, encoding="utf-8")
    (ws / "AGENTS.md").write_text("# Zeta first\n- one\n\n## Alpha second\n- two\n", encoding="utf-8")
    await import_workspace(engine, "s1", ws)
    prompt = (await engine.assemble("s1", 2000)).prompt
    positions = [prompt.index(text) for text in ("# USER.md", "## Context", "## About")]
    assert positions == sorted(positions), prompt
    assert prompt.index("# Zeta first") < prompt.index("## Alpha second"), prompt


async def test_an_inserted_bootstrap_section_updates_in_place(engine: ClawVMEngine, tmp_path: Path) -> None:
    ws = tmp_path / "insert"
    ws.mkdir()
    (ws / "AGENTS.md").write_text("# Start\n- one\n\n## End\n- three\n", encoding="utf-8")
    await import_workspace(engine, "s1", ws)
    (ws / "AGENTS.md").write_text("# Start\n- one\n\n## Middle\n- two\n\n## End\n- three\n", encoding="utf-8")
    report = await import_workspace(engine, "s1", ws)
    assert report.ok and report.stale == []
    prompt = (await engine.assemble("s1", 2000)).prompt
    assert [prompt.count(h) for h in ("# Start", "## Middle", "## End")] == [1, 1, 1], prompt
    assert prompt.index("# Start") < prompt.index("## Middle") < prompt.index("## End"), prompt


MEMORY_PREFS = """\
# MEMORY.md

## Preferences
- avoid meetings before ten, and avoid calls after six in the evening on weekdays
- avoid long emails; bullet points are easier to read on a phone
- tea, not coffee, in the afternoon
- replies in British English, with metric units and 24-hour times

## Red lines
- never share the user's address
"""


def test_a_preferences_section_is_a_preference_whatever_its_items_say() -> None:
    pages = plan_file("MEMORY.md", MEMORY_PREFS, "memory")
    assert [(p.content.splitlines()[0], p.type) for p in pages] == [
        ("## Preferences", "preference"),
        ("## Red lines", "constraint"),
    ]


async def test_at_a_small_budget_the_red_lines_are_the_constraint_met(engine: ClawVMEngine, tmp_path: Path) -> None:
    ws = tmp_path / "prefs"
    ws.mkdir()
    (ws / "AGENTS.md").write_text(AGENTS, encoding="utf-8")
    (ws / "MEMORY.md").write_text(MEMORY_PREFS, encoding="utf-8")
    report = await import_workspace(engine, "s1", ws, budget=120)  # a misread Preferences section took the room
    assert report.ok, report.pages
    assembly = await engine.assemble("s1", 120)
    assert "never share the user's address" in assembly.prompt


def _symlinked_workspace(tmp_path: Path, target: Path) -> Path:
    ws = tmp_path / "linked"
    ws.mkdir()
    (ws / "SOUL.md").write_text(SOUL, encoding="utf-8")
    (ws / "AGENTS.md").symlink_to(target)
    return ws


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ"])
async def test_a_symlink_out_of_the_workspace_never_becomes_a_page(
    engine: ClawVMEngine, tmp_path: Path, target: str
) -> None:
    ws = _symlinked_workspace(tmp_path, Path(target))
    report = await import_workspace(engine, "s1", ws)
    assert [(r.file, "symbolic link" in r.reason) for r in report.refused] == [("AGENTS.md", True)]
    assert not report.ok
    assert report.files == ["SOUL.md"]
    pages = await engine.pages("s1")
    assert [p.page_id for p in pages if p.page_id.startswith("ws/agents")] == []
    assert all("root:" not in p.content and "PATH=" not in p.content for p in pages)


async def test_a_symlink_inside_the_workspace_is_refused_too(engine: ClawVMEngine, tmp_path: Path) -> None:
    ws = tmp_path / "inside"
    ws.mkdir()
    (ws / "notes.txt").write_text("# Rules\n- be brief\n", encoding="utf-8")
    (ws / "AGENTS.md").symlink_to(ws / "notes.txt")
    (ws / "SOUL.md").write_text(SOUL, encoding="utf-8")
    report = await import_workspace(engine, "s1", ws)
    assert [r.file for r in report.refused] == ["AGENTS.md"] and "symbolic link" in report.refused[0].reason


async def test_a_fifo_or_a_directory_is_refused_without_blocking(engine: ClawVMEngine, tmp_path: Path) -> None:
    import os

    ws = tmp_path / "special"
    ws.mkdir()
    os.mkfifo(ws / "USER.md")
    (ws / "MEMORY.md").mkdir()
    (ws / "SOUL.md").write_text(SOUL, encoding="utf-8")
    with anyio.fail_after(5):
        report = await import_workspace(engine, "s1", ws)
    reasons = {r.file: r.reason for r in report.refused}
    assert set(reasons) == {"USER.md", "MEMORY.md"}
    assert all("not a regular file" in r for r in reasons.values()), reasons
    assert report.files == ["SOUL.md"]


async def test_a_file_over_the_size_cap_is_refused_with_its_size(engine: ClawVMEngine, tmp_path: Path) -> None:
    ws = tmp_path / "big"
    ws.mkdir()
    (ws / "MEMORY.md").write_text("# Log\n" + "- a line of memory\n" * 5000, encoding="utf-8")
    (ws / "SOUL.md").write_text(SOUL, encoding="utf-8")
    report = await import_workspace(engine, "s1", ws, max_file_bytes=64 * 1024)
    (refusal,) = report.refused
    assert refusal.file == "MEMORY.md"
    assert "95006 bytes" in refusal.reason and "65536-byte" in refusal.reason and "--max-file-bytes" in refusal.reason
    assert [p.page_id for p in await engine.pages("s1") if p.page_id.startswith("ws/memory")] == []


def test_cli_reports_refusals_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _symlinked_workspace(tmp_path, Path("/etc/passwd"))
    assert run_cli("import", "--session", "s1", "--db", str(tmp_path / "r.db"), str(ws)) == 1
    captured = capsys.readouterr()
    assert "refused    AGENTS.md" in captured.out and "symbolic link" in captured.out
    assert "refused" in captured.err
