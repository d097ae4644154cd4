"""`clawvm-mcp inspect`: terminal and self-contained HTML reports of a session, read-only (issue 6)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import anyio
import pytest

from clawvm_mcp.cli import main
from clawvm_mcp.engine import ClawVMEngine, EngineConfig, EnginePolicy
from clawvm_mcp.engine.results import AssembleResult
from clawvm_mcp.inspect import inspect_session, load_report, render_html
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import SQLiteStore

pytestmark = pytest.mark.anyio

PROV = Provenance("user", "ext:chat", 0)
RULES = "# Deploy rules\n- never push to main\n- run the tests before merging"


async def build(db: Path) -> None:
    """A session with a hard-pinned page, a plan, evidence, a rejected write, a staged write and a flush_miss."""
    store = await SQLiteStore.open(db)
    try:
        lossy = EngineConfig(policy=EnginePolicy(name="no-writeback", writeback_compaction=False))
        engine = ClawVMEngine(store, config=lossy)
        await engine.session_start("s1", budget=600)
        await engine.write("s1", WriteRequest("create", "rules", PROV, "bootstrap", RULES))
        await engine.write(
            "s1", WriteRequest("create", "plan/main", PROV, "plan", "Ship <v1> & more\n- [x] design\n- [ ] importer")
        )
        await engine.tool_execute("s1", "read_file", {"path": "a.py"}, "def f():\n    return 1\n" * 30)
        await engine.write("s1", WriteRequest("set", "plan/main", PROV, content="no base version"))
        await engine.write("s1", WriteRequest("append", "plan/main", PROV, content="- [ ] lost", commit="boundary"))
        await engine.lifecycle("s1", "compaction")  # this policy drops the staged write: flush_miss
        await engine.write("s1", WriteRequest("append", "plan/main", PROV, content="- [ ] kept", commit="boundary"))
        await engine.assemble("s1")
        await engine.lifecycle("s1", "turn_end")
    finally:
        await store.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "memory.db"
    await build(path)
    return path


async def test_terminal_report_has_pages_levels_journal_and_faults(db: Path) -> None:
    text = await inspect_session(db, "s1")
    assert text.startswith("clawvm-mcp session report  session s1  project default  principal local  turn 1")
    rows = {
        ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[1:-1]]
        for ln in text.splitlines()
        if ln.startswith("│ ")
    }
    assert rows["rules"][:7] == ["rules", "bootstrap", "project", "hard", "structured", "v1", "full"]
    assert rows["plan/main"][9] == "1"  # one staged write not yet committed
    assert rows["flush_miss"] == ["flush_miss", "1"] and rows["refetch"] == ["refetch", "0"]
    assert "JOURNAL  committed 3, lost 1, rejected 1, validated 1  (last 6 rows)" in text
    assert "DESTRUCTIVE_OP: set needs base_version (current version is 1)" in text
    assert "FLUSH_MISS: compaction" in text
    assert "FAULTS  total 1  hits 0  duplicate_signature 0  thrash 1.000  tool calls 1" in text


async def test_resident_levels_are_what_context_assemble_would_choose(db: Path) -> None:
    async def assemble() -> AssembleResult:
        store = await SQLiteStore.open(db)
        try:
            engine = ClawVMEngine(store)
            await engine.session_start("s1")  # settles the staged row, which inspect shows as staged
            return await engine.assemble("s1")
        finally:
            await store.close()

    await assemble()
    report = await load_report(db, "s1")
    assembly = await assemble()
    assert {c.page_id: c.level.label for c in report.selection.choices} == {p.page_id: p.level for p in assembly.pages}
    assert report.selection.tokens_used == assembly.tokens_used


async def test_inspecting_never_settles_or_writes(db: Path) -> None:
    before = db.read_bytes()
    await inspect_session(db, "s1", db.parent / "report.html")
    store = await SQLiteStore.open(db)
    try:
        assert len(await store.pending("s1")) == 1  # the staged row is still staged
        assert (await store.journal_counts("s1"))["validated"] == 1
    finally:
        await store.close()
    assert db.read_bytes() == before


async def test_physical_insufficiency_is_flagged(db: Path) -> None:
    store = await SQLiteStore.open(db)
    try:
        await ClawVMEngine(store).session_start("s1", budget=5)
    finally:
        await store.close()
    text = await inspect_session(db, "s1")
    assert re.search(r"!! physical insufficiency: \d+ tokens short for rules", text)


async def test_unknown_session_and_missing_database(db: Path, tmp_path: Path) -> None:
    with pytest.raises(LookupError, match="no session 'nope'"):
        await inspect_session(db, "nope")
    missing = tmp_path / "missing.db"
    with pytest.raises(LookupError, match="no database"):
        await inspect_session(missing, "s1")
    assert not missing.exists()


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


async def test_html_report_is_self_contained_and_escaped(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    text = await inspect_session(db, "s1", out)
    page = out.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(page)
    assert not {"script", "link", "img", "iframe", "object"} & set(parser.tags)
    assert not [a for a in parser.attrs if a[0] in ("src", "href")]
    assert "http://" not in page and "https://" not in page and "url(" not in page
    assert "Ship &lt;v1&gt; &amp; more" in page and "<v1>" not in page
    body = " ".join(parser.text)
    for page_id in ("rules", "plan/main", "ev/read_file/"):
        assert page_id in body and page_id in text
    assert 'class="lv lv-full"' in page and "flush_miss" in body
    assert "Physical insufficiency" not in page


async def test_html_renders_an_empty_session(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    store = await SQLiteStore.open(db)
    try:
        await ClawVMEngine(store).session_start("empty")
    finally:
        await store.close()
    report = await load_report(db, "empty")
    assert "(none)" in render_html(report)
    assert "(none)" in await inspect_session(db, "empty")


def test_cli_inspect_with_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "memory.db"
    anyio.run(build, db)
    out = tmp_path / "r.html"
    assert main(["inspect", "--db", str(db), "--session", "s1", "--html", str(out)]) == 0
    assert "PAGES  resident" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert main(["inspect", "--db", str(db), "--session", "nope"]) == 2
    assert "no session 'nope'" in capsys.readouterr().err


# ------------------------------------------------------------------------ issue 15: escapes, lifecycle, prompt

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"  # a clipboard write: a terminal that receives it raw sets the clipboard
CSI_C1 = "\x9b2J"  # the 8-bit CSI: clears the screen on terminals that honour C1 controls
BIDI = "\u202e"  # right-to-left override: reorders what the reader sees


async def build_hostile(db: Path) -> None:
    """Page content, a title and a tool result carrying terminal control sequences."""
    store = await SQLiteStore.open(db)
    try:
        engine = ClawVMEngine(store)
        await engine.session_start("h1", budget=2000)
        await engine.write("h1", WriteRequest("create", "rules", PROV, "bootstrap", f"# Rules {OSC52}\n- be careful"))
        await engine.write(
            "h1", WriteRequest("create", "notes", PROV, "preference", f"t\x1b[31mred\nx{CSI_C1} {BIDI}evil")
        )
        await engine.tool_execute("h1", "cat", {"path": "log"}, f"line one\nbell\x07 {OSC52} end")
    finally:
        await store.close()


def _no_controls(text: str) -> None:
    bad = sorted({hex(ord(c)) for c in text if (ord(c) < 32 and c not in "\n") or 0x7F <= ord(c) < 0xA0})
    assert not bad, f"raw control characters reached the output: {bad}"
    assert BIDI not in text


async def test_control_characters_are_shown_never_sent_raw(tmp_path: Path) -> None:
    db = tmp_path / "hostile.db"
    await build_hostile(db)
    out = tmp_path / "r.html"
    text = await inspect_session(db, "h1", out)
    page = out.read_text(encoding="utf-8")
    for rendered in (text, page):
        _no_controls(rendered)
        assert r"\x1b]52;c;cm0gLXJmIH4=\x07" in rendered  # visible, so a reader sees what the page holds
        assert r"\x9b2J" in rendered and r"\u202e" in rendered
    assert r"t\x1b[31mred" in page  # the title (the first line), shown in the HTML page table


async def test_prompt_text_is_what_context_assemble_would_build(db: Path) -> None:
    async def assemble() -> AssembleResult:
        store = await SQLiteStore.open(db)
        try:
            engine = ClawVMEngine(store)
            await engine.session_start("s1")  # settles the staged row, which inspect shows as staged
            return await engine.assemble("s1")
        finally:
            await store.close()

    await assemble()
    report = await load_report(db, "s1")
    assert report.prompt == (await assemble()).prompt
    assert report.prompt.startswith('<page id="rules" type="bootstrap" v="1" level="full">\n# Deploy rules')
    text = await inspect_session(db, "s1")
    assert "PROMPT  the text the next context_assemble at budget 600 would build" in text
    assert '<page id="plan/main" type="plan" v="2" level="full">' in text  # the settled append


async def test_lifecycle_history_shows_boundary_outcomes_and_faults_by_turn(db: Path, tmp_path: Path) -> None:
    text = await inspect_session(db, "s1", tmp_path / "r.html")
    head = next(ln for ln in text.splitlines() if ln.startswith("LIFECYCLE"))
    assert "1 boundary" in head and "state open" in head
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in text.split("LIFECYCLE", 1)[1].splitlines()]
    rows = [r for r in rows if r and r[0].isdigit()]
    assert ["0", "boundary write", "plan/main", "lost", "FLUSH_MISS: compaction"] in rows
    assert ["0", "boundary write", "plan/main", "validated", "staged, waits for the next boundary"] in rows
    assert ["0", "fault", "plan/main", "flush_miss", "dirty at compaction, not committed"] in rows
    assert "not stored" in text.split("LIFECYCLE", 1)[1]  # says what it cannot show
    html_page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h2>Lifecycle</h2>" in html_page and "<h2>Prompt</h2>" in html_page


async def test_inspect_reads_while_a_writer_holds_the_lock(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read-only: inspecting a live session must not need the write lock the serving process holds."""
    import sqlite3

    monkeypatch.setenv("CLAWVM_STORE_TIMEOUT", "0.3")
    before = db.read_bytes()
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        text = await inspect_session(db, "s1")
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert "PAGES  resident" in text
    assert db.read_bytes() == before
