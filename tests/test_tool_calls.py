"""Tool results stay true (DESIGN section 9): an idempotent repeat is answered from memory only while its stored
result is valid; a different result is a new version; a write-like call invalidates what it may have changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.store import SQLiteStore

pytestmark = pytest.mark.anyio


async def _engine(tmp_path: Path) -> ClawVMEngine:
    engine = ClawVMEngine(await SQLiteStore.open(tmp_path / "t.db"))
    await engine.session_start("s")
    return engine


async def test_a_repeat_with_a_different_result_is_stored_as_a_new_version(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    first = await engine.tool_execute("s", "pytest", {"q": "-q"}, "1 failed", idempotent=True)
    same = await engine.tool_execute("s", "pytest", {"q": "-q"}, "1 failed", idempotent=True)
    assert (first.status, same.status, same.stored_result) == ("recorded", "duplicate_signature", "1 failed")
    moved = await engine.tool_execute("s", "pytest", {"q": "-q"}, "12 passed", idempotent=True)
    assert moved.status == "updated" and moved.evidence_page_id == first.evidence_page_id
    again = await engine.tool_execute("s", "pytest", {"q": "-q"}, idempotent=True)
    assert (again.status, again.stored_result) == ("duplicate_signature", "12 passed")
    read = await engine.read("s", first.evidence_page_id)
    assert read.page is not None and read.page.version == 2
    await engine.store.close()


async def test_only_the_declared_read_only_tools_are_idempotent_by_default(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    await engine.tool_execute("s", "Read", {"file_path": "a.py"}, "print(1)")
    assert (await engine.tool_execute("s", "Read", {"file_path": "a.py"})).status == "duplicate_signature"
    await engine.tool_execute("s", "run_tests", {}, "ok")
    assert (await engine.tool_execute("s", "run_tests", {}, "ok")).status == "recorded"  # never from memory
    await engine.store.close()


async def test_an_edit_of_a_path_invalidates_stored_reads_of_it_and_only_those(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    await engine.tool_execute("s", "Read", {"file_path": "src/a.py"}, "old a")
    await engine.tool_execute("s", "Read", {"file_path": "src/b.py"}, "b")
    await engine.tool_execute("s", "Grep", {"pattern": "x", "path": "src"}, "src/a.py: x")
    await engine.tool_execute("s", "Edit", {"file_path": "src/a.py", "old_string": "old", "new_string": "new"}, "ok")
    after_a = await engine.tool_execute("s", "Read", {"file_path": "src/a.py"})
    assert after_a.status == "recorded" and after_a.stored_result is None  # never the stale text
    assert (await engine.tool_execute("s", "Read", {"file_path": "src/b.py"})).status == "duplicate_signature"
    grep = await engine.tool_execute("s", "Grep", {"pattern": "x", "path": "src"})
    assert grep.status == "recorded"  # its folder holds the edited file
    fresh = await engine.tool_execute("s", "Read", {"file_path": "src/a.py"}, "new a")
    assert fresh.status == "recorded"
    assert (await engine.tool_execute("s", "Read", {"file_path": "src/a.py"})).stored_result == "new a"
    await engine.store.close()


async def test_a_write_like_call_naming_no_path_invalidates_every_stored_result(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    await engine.tool_execute("s", "Read", {"file_path": "a.py"}, "a")
    await engine.tool_execute("s", "WebSearch", {"query": "clawvm"}, "results")
    await engine.tool_execute("s", "Bash", {"command": "make clean"}, "done")
    assert (await engine.tool_execute("s", "Read", {"file_path": "a.py"})).status == "recorded"
    assert (await engine.tool_execute("s", "WebSearch", {"query": "clawvm"})).status == "recorded"
    await engine.store.close()


async def test_invalidation_is_seen_by_another_process(tmp_path: Path) -> None:
    """The stored result's validity lives in the store: a second engine on the file never answers it stale."""
    engine = await _engine(tmp_path)
    other = ClawVMEngine(await SQLiteStore.open(tmp_path / "t.db"))
    await engine.tool_execute("s", "Read", {"file_path": "a.py"}, "old")
    assert (await other.tool_execute("s", "Read", {"file_path": "a.py"})).status == "duplicate_signature"
    await engine.tool_execute("s", "Write", {"file_path": "a.py", "content": "new"}, "ok")
    assert (await other.tool_execute("s", "Read", {"file_path": "a.py"})).status == "recorded"
    await engine.store.close()
    await other.store.close()
