"""Unit tests of the domain modules, with no MCP in the way."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from clawvm_mcp.engine import ClawVMEngine, EngineConfig, EngineError, EnginePolicy, PageInput
from clawvm_mcp.faults import FaultObserver
from clawvm_mcp.journal import WriteRequest, merge_fields
from clawvm_mcp.pages import TYPE_POLICIES, Fidelity, Provenance
from clawvm_mcp.represent import build_representations, compress, derive_fields
from clawvm_mcp.selector import SelectorPolicy, decay_recency
from clawvm_mcp.store import SQLiteStore, StoreError
from clawvm_mcp.store.base import Conflict, JournalEntry, PageCommit
from clawvm_mcp.store.sqlite import SCHEMA_VERSION
from clawvm_mcp.tokens import TokenCounter

PROV = Provenance("user", "ext:test", 0)
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- tokens


def test_token_counting_is_offline_and_exact(tmp_path: Path) -> None:
    """In a child with every socket refused and an empty tiktoken cache, our encoder still counts; tiktoken's own
    loader cannot (which shows the network block is real, so this test can fail)."""
    script = """
import socket
def refuse(*a, **k):
    raise OSError("network disabled by test")
socket.socket.connect = refuse
socket.create_connection = refuse
from clawvm_mcp.tokens import TokenCounter, cl100k_offline
assert cl100k_offline().encode("hello world") == [15339, 1917]
assert TokenCounter().count("hello world") == 2
import tiktoken
try:
    tiktoken.get_encoding("cl100k_base")
except Exception:
    print("OFFLINE-OK")
else:
    print("NETWORK-USED")
"""
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"), "DATA_GYM_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OFFLINE-OK"
    assert not any((tmp_path / "empty-cache").glob("*")) if (tmp_path / "empty-cache").exists() else True


def test_token_counter_caches_per_text() -> None:
    counter = TokenCounter(cache_size=2)
    assert counter.count("") == 0
    assert counter.count("one two three") == counter.count("one two three") == 3
    counter.count("a")
    counter.count("b")
    assert len(counter._cache) == 2  # bounded


# ---------------------------------------------------------------- represent


def test_representations_are_deterministic_and_ordered() -> None:
    counter = TokenCounter()
    content = "Build log\n" + "\n".join(f"step {i}: compiled module_{i}.py ok" for i in range(60))
    fields = derive_fields("evidence", "ev/build", content)
    reps1 = build_representations(
        counter, page_id="ev/build", page_type="evidence", version=3, title="Build log", content=content, fields=fields
    )
    reps2 = build_representations(
        counter, page_id="ev/build", page_type="evidence", version=3, title="Build log", content=content, fields=fields
    )
    assert reps1 == reps2
    assert reps1[Fidelity.COMPRESSED].tokens * 3 <= reps1[Fidelity.FULL].tokens + 3
    assert reps1[Fidelity.POINTER].text.startswith("[page ev/build evidence v3: Build log — ")
    assert reps1[Fidelity.POINTER].text.endswith(" tokens at full; page_read to load]")
    assert "module_0.py" in fields["paths"]


def test_compress_collapses_repeats_and_keeps_head_and_tail() -> None:
    text = "first\n" + "same\n" * 50 + "middle\n" * 3 + "\n".join(f"l{i}" for i in range(20)) + "\nlast"
    out = compress(text)
    assert out.startswith("first\nsame\nmiddle")
    assert out.endswith("l19\nlast")
    assert "lines omitted" in out


@pytest.mark.parametrize(
    ("page_type", "content", "expect"),
    [
        ("bootstrap", "# Rules\n- a\n- b", {"title": "Rules", "rules": ["a", "b"]}),
        ("constraint", "Never touch prod", {"rule": "Never touch prod", "applies_to": "*"}),
        (
            "plan",
            "Ship\n- [x] a\n- [ ] b\n- [ ] c",
            {"goal": "Ship", "current_step": "b", "steps_done": ["a"], "steps_left": ["b", "c"]},
        ),
        ("preference", "editor: vim", {"key": "editor", "value": "vim", "scope_note": ""}),
    ],
)
def test_structured_fields_per_type(page_type: str, content: str, expect: dict[str, object]) -> None:
    assert derive_fields(page_type, "p", content) == expect  # type: ignore[arg-type]


# ---------------------------------------------------------------- journal merge rules


def test_merge_rules() -> None:
    effective = {"paths": ["a"], "summary": "s"}
    assert merge_fields({}, effective, {"paths": ["a", "b"], "summary": "new"}, "merge") == {"paths": ["a", "b"]}
    assert merge_fields({}, effective, {"paths": ["a"]}, "append") == {"paths": ["a", "a"]}
    assert merge_fields({"summary": "s"}, effective, {"summary": "more"}, "append") == {"summary": "s more"}
    assert merge_fields({"x": "y"}, effective, {"summary": "z"}, "set") == {"summary": "z"}


# ---------------------------------------------------------------- selector and faults


def test_recency_decay_and_floor() -> None:
    recency = {"a": 1.0, "b": 0.00011}
    decay_recency(recency, ["c"])
    assert recency == {"a": 0.88, "c": 1.0}


def test_thrash_index() -> None:
    obs = FaultObserver()
    obs.fault("refetch", 1, "ev/a")
    obs.duplicate_signature = 1
    obs.hits = 3
    assert obs.total == 1 and obs.thrash == 0.5


# ---------------------------------------------------------------- engine (no MCP)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _engine(tmp_path: Path, policy: EnginePolicy | None = None) -> ClawVMEngine:
    store = await SQLiteStore.open(tmp_path / "e.db")
    return ClawVMEngine(store, config=EngineConfig(policy=policy or EnginePolicy()))


@pytest.mark.anyio
async def test_engine_flush_miss_only_without_writeback(tmp_path: Path) -> None:
    no_writeback = EnginePolicy(name="no-wb", writeback_reset=False)
    engine = await _engine(tmp_path, no_writeback)
    await engine.session_start("s", bootstrap=[PageInput("rules", "# R\n- x")])
    await engine.write("s", WriteRequest("create", "pref/a", PROV, "preference", "k: v"))
    staged = await engine.write("s", WriteRequest("append", "pref/a", PROV, content="more", commit="boundary"))
    assert staged.status == "staged"
    life = await engine.lifecycle("s", "reset")
    assert [f.kind for f in life.faults] == ["flush_miss"]
    read = await engine.read("s", "pref/a")
    assert read.page is not None and read.page.text == "k: v" and not read.page.dirty
    journal = await engine.journal("s")
    assert journal.entries[-1].status == "lost"
    await engine.store.close()


@pytest.mark.anyio
async def test_engine_post_compaction_bootstrap_without_auto_pin(tmp_path: Path) -> None:
    baseline = EnginePolicy(
        name="no-pin", selector=SelectorPolicy(auto_pin_hard=False, prefetch_pointer=False, upgrade_mode="none")
    )
    engine = await _engine(tmp_path, baseline)
    await engine.session_start("s", bootstrap=[PageInput("rules", "# R\n- x")])
    await engine.lifecycle("s", "compaction")
    await engine.assemble("s", 100)
    await engine.assemble("s", 100)
    stats = await engine.stats("s")
    assert stats.faults["post_compaction_bootstrap"] == 1
    assert stats.faults["pinned_invariant_miss"] == 1
    await engine.store.close()


@pytest.mark.anyio
async def test_engine_duplicate_tool_when_result_unresolvable(tmp_path: Path) -> None:
    retrieval = EnginePolicy(
        name="retrieval",
        pointer_resolution=False,
        selector=SelectorPolicy(auto_pin_hard=False, prefetch_pointer=False, upgrade_mode="none"),
    )
    engine = await _engine(tmp_path, retrieval)
    await engine.session_start("s")
    first = await engine.tool_execute("s", "grep", {"q": "x"}, "a.py: x", idempotent=True)
    await engine.assemble("s", 100, [(first.evidence_page_id, "full")])
    resident = await engine.tool_execute("s", "grep", {"q": "x"}, idempotent=True)
    assert resident.status == "duplicate_signature"
    await engine.lifecycle("s", "compaction")
    rerun = await engine.tool_execute("s", "grep", {"q": "x"}, "a.py: x", idempotent=True)
    assert rerun.status == "duplicate_tool" and rerun.call_id != first.call_id
    await engine.assemble("s", 100, [(first.evidence_page_id, "full")])
    await engine.lifecycle("s", "compaction")
    recalled = await engine.recall("s", "grep a.py")
    assert recalled.outcome == "hit"
    stats = await engine.stats("s")
    assert stats.faults["duplicate_tool"] == 1 and stats.faults["refetch"] == 1
    await engine.store.close()


@pytest.mark.anyio
async def test_engine_silent_recall_only_without_typed_outcomes(tmp_path: Path) -> None:
    for typed, outcome, faults in ((True, "denied", 0), (False, "no_match", 1)):
        engine = await _engine(tmp_path / str(typed), EnginePolicy(typed_recall=typed))
        await engine.session_start("s")
        result = await engine.recall("s", "anything", backend="denied")
        assert result.outcome == outcome
        assert (await engine.stats("s")).faults["silent_recall"] == faults
        await engine.store.close()


@pytest.mark.anyio
async def test_engine_rejects_bad_input_clearly(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    with pytest.raises(EngineError, match="Invalid session_id"):
        await engine.session_start("../etc")
    with pytest.raises(EngineError, match="budget must be between"):
        await engine.session_start("s", budget=0)
    await engine.session_start("s")
    with pytest.raises(EngineError, match="Unknown fidelity"):
        await engine.read("s", "x", "ultra")
    with pytest.raises(EngineError, match="Unknown event"):
        await engine.lifecycle("s", "nap")
    await engine.store.close()


@pytest.mark.anyio
async def test_hard_pin_floor_over_budget_is_invariant_violation(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    await engine.session_start("s", budget=10)
    big = "# Rules\n" + "\n".join(f"- rule {i} is long enough to matter" for i in range(20))
    result = await engine.session_start("s", bootstrap=[PageInput("rules", big)])
    assert result.bootstrap[0].status == "rejected"
    assert result.bootstrap[0].reasons[0].code == "INVARIANT_VIOLATION"
    await engine.store.close()


# ---------------------------------------------------------------- store


@pytest.mark.anyio
async def test_store_is_wal_with_schema_version(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    await store.close()
    with sqlite3.connect(tmp_path / "s.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    again = await SQLiteStore.open(tmp_path / "s.db")  # reopening migrates nothing and keeps the file
    await again.close()


@pytest.mark.anyio
async def test_store_refuses_foreign_and_newer_databases(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as raw:
        raw.execute("CREATE TABLE notes(x)")
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="another application"):
        await SQLiteStore.open(foreign)
    assert foreign.read_bytes() == before
    newer = tmp_path / "newer.db"
    store = await SQLiteStore.open(newer)
    await store.close()
    with sqlite3.connect(newer) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="knows up to"):
        await SQLiteStore.open(newer)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        await SQLiteStore.open(garbage)


# ---------------------------------------------------------------- layering


def test_type_table_matches_design() -> None:
    expect = {
        "bootstrap": ("structured", "hard", "project"),
        "constraint": ("structured", "hard", "session"),
        "plan": ("structured", "none", "session"),
        "preference": ("pointer", "none", "project"),
        "evidence": ("pointer", "soft", "session"),
        "conversation": ("pointer", "none", "session"),
    }
    got = {t: (p.min_fidelity.label, p.default_pin, p.default_scope) for t, p in TYPE_POLICIES.items()}
    assert got == expect


@pytest.mark.anyio
async def test_hook_process_settling_staged_rows_is_reconciled(tmp_path: Path) -> None:
    """A harness hook (another process) ends a turn, which commits nothing (a turn end is no boundary), then
    flushes, which settles the server's staged row; the server's next boundary must neither re-commit it nor flip
    the committed journal row to rejected, and the hook's turn is not lost."""
    server_store = await SQLiteStore.open(tmp_path / "shared.db")
    server = ClawVMEngine(server_store)
    await server.session_start("s")
    await server.write("s", WriteRequest("create", "pref/a", PROV, "preference", "k: v", commit="boundary"))
    hook_store = await SQLiteStore.open(tmp_path / "shared.db")
    hook_engine = ClawVMEngine(hook_store)
    turn = await hook_engine.lifecycle("s", "turn_end")
    assert (turn.committed, turn.rejected) == (0, 0)  # staged writes wait for a boundary
    flushed = await hook_engine.lifecycle("s", "flush")
    assert (flushed.committed, flushed.rejected) == (1, 0)  # the hook settles the row the server staged
    await hook_store.close()
    life = await server.lifecycle("s", "compaction")
    assert (life.committed, life.rejected) == (0, 0)  # settled once, elsewhere
    assert life.turn == 1  # the hook's turn_end is not lost either
    journal = await server.journal("s")
    assert [(e.status, e.version) for e in journal.entries] == [("committed", 1)]
    read = await server.read("s", "pref/a")
    assert read.page is not None and read.page.version == 1 and not read.page.dirty
    await server_store.close()


@pytest.mark.anyio
async def test_store_commit_is_compare_and_swap(tmp_path: Path) -> None:
    """A commit validated against v1 must not land on a page another writer moved to v2 meanwhile; the conflict
    changes nothing (the caller re-reads and tries again), not even the journal."""
    store = await SQLiteStore.open(tmp_path / "cas.db")
    engine = ClawVMEngine(store)
    await engine.session_start("s")
    await engine.write("s", WriteRequest("create", "pref/a", PROV, "preference", "k: v1", scope="session"))
    stale = await store.get_page("s:s", "pref/a")
    assert stale is not None and stale.version == 1
    await engine.write("s", WriteRequest("set", "pref/a", PROV, content="k: v2", base_version=1))
    entry = JournalEntry("s", "s:s", "pref/a", "set", "staged", "now", {"op": "set"}, 0)
    attempt = replace(stale, content="k: lost?", version=2)
    before = await store.journal("s", 100)
    committed, conflicts = await store.commit([PageCommit("s:s", attempt, 1, (), entry)])
    assert committed == [] and conflicts == [Conflict("pref/a", 2)]
    assert await store.journal("s", 100) == before
    now = await store.get_page("s:s", "pref/a")
    assert now is not None and (now.version, now.content) == (2, "k: v2")
    await store.close()
