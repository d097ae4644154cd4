"""Joining a session settles nothing; the explicit start settles what a crash left (docs/design.md, Writeback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import SQLiteStore

pytestmark = pytest.mark.anyio
PROV = Provenance("user", "ext:test", 0)


async def test_a_joining_process_sees_staged_rows_but_only_session_start_settles_them(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    first = ClawVMEngine(await SQLiteStore.open(db))
    await first.session_start("s")
    await first.write("s", WriteRequest("create", "plan/p", PROV, "plan", "Goal\n- [ ] a", commit="boundary"))
    await first.write("s", WriteRequest("append", "plan/p", PROV, content="- [ ] b", commit="boundary"))
    await first.store.close()  # the staging process is gone (a crash, or a hook that exited)

    hook = ClawVMEngine(await SQLiteStore.open(db))
    joined = await hook.open_session("s")
    assert (joined.resumed, joined.settled_committed) == (True, 0)
    read = await hook.read("s", "plan/p")  # the staged view, replayed from the journal
    assert read.page is not None and read.page.dirty and read.page.text.endswith("- [ ] b")
    assert (await hook.lifecycle("s", "turn_end")).committed == 0  # a turn end is no boundary
    assert (await hook.stats("s")).journal == {"validated": 2}
    await hook.store.close()

    server = ClawVMEngine(await SQLiteStore.open(db))
    started = await server.session_start("s")  # the explicit start settles what was left staged
    assert (started.settled_committed, started.settled_rejected) == (2, 0)
    page = await server.read("s", "plan/p")
    assert page.page is not None and not page.page.dirty and page.page.version == 1
    await server.store.close()
