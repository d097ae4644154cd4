"""The cyclic collector is paused while a session's pages load (clawvm_mcp/gc_pause.py), and runs again after."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clawvm_mcp import gc_pause
from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.engine.merge import PageMerger
from clawvm_mcp.gc_pause import gc_paused
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.page_table import PageTable
from clawvm_mcp.pages import Page, Provenance
from clawvm_mcp.store.sqlite import SQLiteStore
from clawvm_mcp.tokens import TokenCounter


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_pauses_nest_and_overlap_and_the_collector_runs_after_the_last(collector_on: None) -> None:
    first = gc_paused()
    first.__enter__()
    assert not gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the outer pause still holds
    second = gc_paused()
    second.__enter__()
    first.__exit__(None, None, None)  # overlapping, not nested: the first ends while the second holds
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_application_stays_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def test_a_pause_that_leaves_many_new_objects_freezes_them_and_a_small_one_does_not(
    collector_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gc_pause, "FREEZE_AT", 5_000)
    gc.collect()
    before = gc.get_freeze_count()
    try:
        with gc_paused():
            small = [[i] for i in range(100)]
        assert gc.get_freeze_count() == before
        with gc_paused():
            large = [[i] for i in range(10_000)]
        assert gc.get_freeze_count() >= before + 10_000  # the table built in the pause is frozen
        assert gc.isenabled()
        assert len(small) + len(large) == 10_100
    finally:
        gc.unfreeze()


def test_an_error_inside_the_pause_still_ends_it(collector_on: None) -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


@pytest.mark.anyio
async def test_a_session_loads_its_pages_with_the_collector_paused(tmp_path: Path, collector_on: None) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    try:
        engine = ClawVMEngine(store, TokenCounter())
        await engine.session_start("s1")
        await engine.write("s1", _create("conv/1"))
        seen: list[bool] = []
        real = store.load_pages

        async def load_pages(namespaces: list[str]) -> Any:
            out = await real(namespaces)
            seen.append(gc.isenabled())
            return out

        store.load_pages = load_pages  # type: ignore[method-assign]
        fresh = ClawVMEngine(store, TokenCounter())  # a second process's cache: it loads the session
        started = await fresh.session_start("s1")
        assert started.pages >= 1 and seen == [False]
        assert gc.isenabled()
    finally:
        await store.close()


def test_building_a_stream_pauses_the_collector(collector_on: None) -> None:
    seen: list[bool] = []

    def key(s: Any) -> Any:
        seen.append(gc.isenabled())
        return (0.0, s.tie, 0, s.page.page_id, s.levels[0])

    table = PageTable([_page("a"), _page("b")])
    table.stream("test", key)
    assert seen == [False, False] and gc.isenabled()


def _create(page_id: str) -> WriteRequest:
    return WriteRequest("create", page_id, Provenance("tool", "ext:t", 0), "conversation", "hello there")


def _page(page_id: str) -> Page:
    return PageMerger(TokenCounter(), 0, 0)(_create(page_id), None)
