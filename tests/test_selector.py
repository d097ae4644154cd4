"""The indexed selector must decide exactly what the plain whole-table selector decides, turn after turn, while the
table changes underneath it. Cases are seeded (a failure names its seed) and cover every upgrade mode, each phase
switch, budgets from zero to more than everything, and sizes that are not monotone in fidelity."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from clawvm_mcp import cost_order, selector
from clawvm_mcp.cost_order import CostOrder
from clawvm_mcp.page_table import PageSizes, PageTable, reversed_key
from clawvm_mcp.pages import PAGE_TYPES, PINS, STORED_LEVELS, TYPE_POLICIES, Fidelity, Page, Provenance, Representation
from clawvm_mcp.replay import reference_selector as ref
from clawvm_mcp.replay.bench import make_pages, make_requests
from clawvm_mcp.selector import Choice, Selection, SelectorPolicy, UpgradeMode, decay_recency, select
from clawvm_mcp.tokens import TokenCounter

MODES: tuple[UpgradeMode, ...] = ("clawvm", "lru", "recency", "oracle", "none")
PROV = Provenance("user", "ext:test", 0)


def _page(rng: random.Random, page_id: str) -> Page:
    page_type = rng.choice(PAGE_TYPES)
    policy = TYPE_POLICIES[page_type]
    base = rng.randint(0, 40)
    # usually growing with fidelity, sometimes not at all (a short page's pointer outgrows its full text)
    sizes = sorted(rng.randint(0, 120) for _ in STORED_LEVELS) if rng.random() < 0.5 else None
    reps = {
        lv: Representation(lv.label, sizes[i] + base if sizes else rng.randint(0, 60))
        for i, lv in enumerate(STORED_LEVELS)
    }
    floor = policy.min_fidelity if rng.random() < 0.8 else rng.choice(STORED_LEVELS)
    return Page(
        page_id=page_id,
        type=page_type,
        scope=policy.default_scope,
        pin=rng.choice(PINS) if rng.random() < 0.4 else policy.default_pin,
        min_fidelity=floor,
        version=1,
        provenance=PROV,
        content="x",
        fields={},
        representations=reps,
        recompute_cost=rng.choice([policy.recompute_cost, rng.uniform(0, 10)]),
        base_utility=rng.choice([policy.base_utility, rng.uniform(0, 10), 5.0]),
        created_turn=0,
        last_access_turn=0,
        deleted=rng.random() < 0.05,
    )


def _trace(sel: Selection | ref.Selection) -> tuple[object, ...]:
    return (
        tuple((c.page_id, c.level, c.tokens, c.reason) for c in sel.choices),
        sel.tokens_used,
        sel.budget,
        sel.unmet_required,
        sel.shortfall_tokens,
    )


def _case(rng: random.Random, table: PageTable) -> None:
    live = [p for p in table.values() if not p.deleted]
    ids = [p.page_id for p in live]
    total = sum(p.representations[Fidelity.FULL].tokens + p.representations[Fidelity.POINTER].tokens for p in live)
    budget = rng.choice([0, 1, rng.randint(0, 60), rng.randint(0, max(1, total // 3)), rng.randint(0, total + 50)])
    demands = {pid: rng.choice(list(Fidelity)) for pid in rng.sample(ids, min(len(ids), rng.randint(0, 3)))}
    recency = {pid: rng.choice([1.0, 0.5, rng.random()]) for pid in rng.sample(ids, min(len(ids), rng.randint(0, 6)))}
    future = {pid: rng.randint(0, 3) for pid in rng.sample(ids, min(len(ids), rng.randint(0, 4)))}
    policy = SelectorPolicy(
        auto_pin_hard=rng.random() < 0.85, prefetch_pointer=rng.random() < 0.85, upgrade_mode=rng.choice(MODES)
    )
    _check(table, demands, budget, policy, recency, future)


def _check(
    table: PageTable,
    demands: dict[str, Fidelity],
    budget: int,
    policy: SelectorPolicy,
    recency: dict[str, float],
    future: dict[str, int],
) -> None:
    want = ref.select(list(table.values()), demands, budget, ref.SelectorPolicy(**_fields(policy)), recency, future)
    got = select(table, demands, budget, policy, recency, future)
    shown = got.shown_rows()  # before ``choices``: read off what was placed, not off the whole-table trace
    assert _trace(got) == _trace(want), (policy, budget, demands)
    for c in want.choices:
        assert got.level_of(c.page_id) == c.level
    assert got.resident() == {c.page_id: c.level for c in want.choices if c.level > Fidelity.NONE}
    unmet = set(want.unmet_required)
    listed = [(c.page_id, c.level, c.tokens, c.reason) for c in want.choices if c.level or c.page_id in unmet]
    assert shown == listed == got.shown_rows(), (policy, budget, demands)
    assert got.shown() == tuple(Choice(*row) for row in listed)


def _fields(policy: SelectorPolicy) -> dict[str, object]:
    return {
        "auto_pin_hard": policy.auto_pin_hard,
        "prefetch_pointer": policy.prefetch_pointer,
        "upgrade_mode": policy.upgrade_mode,
    }


@pytest.mark.parametrize("seed", range(40))
def test_indexed_selector_matches_the_whole_table_selector_as_the_table_changes(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if seed % 2:  # tiny blocks, so the block walks and splits are exercised at these table sizes
        monkeypatch.setattr(cost_order, "BLOCK", 2)
    if seed % 4 < 2:  # the merged stream walk, which tables this small would otherwise not take
        monkeypatch.setattr(selector, "_STREAM_FROM", 0)
    rng = random.Random(seed)
    table = PageTable(_page(rng, f"p{i:03d}") for i in range(rng.choice([1, 5, 20, 60])))
    for _ in range(60):
        _case(rng, table)
        roll = rng.random()
        pid = rng.choice(list(table))
        if roll < 0.35:  # a new version of a page: new sizes, perhaps a new pin or floor
            table[pid] = replace(_page(rng, pid), deleted=False)
        elif roll < 0.45:
            table[pid] = replace(table[pid], deleted=True)
        elif roll < 0.55:
            del table[pid]
        elif roll < 0.75:
            new = f"n{rng.randint(0, 999):03d}"
            table[new] = _page(rng, new)
        elif roll < 0.8:  # the replay backend's in-place utility change, re-indexed by storing the page again
            page = table[pid]
            page.base_utility = rng.uniform(0, 10)
            table[pid] = page
        if not table:
            table["p000"] = _page(rng, "p000")


def test_selection_at_10000_pages_matches_the_whole_table_selector() -> None:
    """The bench's 10,000-page table (the workload of the stdio context_assemble figure), turn after turn:
    recency builds up from demands and decays, pages get new versions, and the budgets run from the paper's sweep
    to more than the table holds at pointer. Every decision must be the reference selector's."""
    table = PageTable(make_pages(make_requests(10_000), TokenCounter()))
    ids = sorted(table.sizes)
    rng = random.Random(10_000)
    recency: dict[str, float] = {}
    for turn, budget in enumerate((4000, 300, 4000, 120, 20_000, 4000, 400_000, 0)):
        demands = {pid: rng.choice(STORED_LEVELS) for pid in rng.sample(ids, turn % 3)}
        future = {pid: rng.randint(1, 3) for pid in rng.sample(ids, 3)}
        mode: UpgradeMode = ("clawvm", "oracle", "recency", "lru")[turn % 4]
        _check(table, demands, budget, SelectorPolicy(upgrade_mode=mode), recency, future)
        decay_recency(recency, demands)
        for pid in rng.sample(ids, 2):  # new versions: other sizes, perhaps another pin or floor
            table[pid] = replace(_page(rng, pid), deleted=False)


def test_page_table_sums_follow_every_change() -> None:
    rng = random.Random(7)
    table = PageTable()
    for step in range(400):
        pid = f"p{rng.randint(0, 30):02d}"
        if pid in table and rng.random() < 0.3:
            del table[pid]
        else:
            table[pid] = _page(rng, pid)
        live = [table.sizes[p] for p in table if not table[p].deleted]
        assert table.sum_full == sum(s.full for s in live), step
        assert table.sum_pointer == sum(s.pointer or 0 for s in live), step
        assert table.hard == {s.page.page_id for s in live if s.page.pin == "hard"}, step
        assert table.prefetch_order.keys() == sorted(s.prefetch for s in live if s.pointer is not None), step


def test_a_table_built_at_once_indexes_as_one_built_page_by_page() -> None:
    """Opening a session builds its table in bulk (sums summed, orders sorted once); the index must be the one
    that assigning the pages in turn keeps, and stay so as the table changes afterwards."""
    rng = random.Random(5)
    pages = [_page(rng, f"p{rng.randint(0, 400):03d}") for _ in range(500)]  # repeats: the later one wins
    bulk, single = PageTable(pages), PageTable()
    for page in pages:
        single[page.page_id] = page

    def index(table: PageTable) -> tuple[object, ...]:
        stream = table.stream("clawvm", lambda s: (-s.entry / 7, s.tie, -int(s.levels[0]), s.page.page_id, s.levels[0]))
        return (
            dict(table.items()),
            set(table.sizes),
            table.hard,
            (table.sum_full, table.sum_pointer, table.sum_free_need, table.sum_most),
            table.prefetch_order.keys(),
            [(c, least <= c) for _, costs, least in table.prefetch_order.blocks() for c in costs],
            stream.order.keys(),
            [(c, least <= c) for _, costs, least in stream.order.blocks() for c in costs],
        )

    assert index(bulk) == index(single)
    for step in range(300):
        pid = f"p{rng.randint(0, 420):03d}"
        page = _page(rng, pid)
        for table in (bulk, single):
            if pid in table and step % 5 == 0:
                del table[pid]
            else:
                table[pid] = page
        assert index(bulk) == index(single), step


def test_page_sizes_pick_the_floor_form_as_the_page_does() -> None:
    rng = random.Random(3)
    for _ in range(500):
        page = _page(rng, "p")
        sizes = PageSizes.of(page)
        assert sizes.floor == page.at_least(page.min_fidelity)
        for want in Fidelity:
            assert sizes.at_least(want) == page.at_least(max(want, page.min_fidelity))


@pytest.mark.parametrize("budget", [40, 10**9], ids=["some-shown", "all-full"])
def test_a_selection_reads_the_table_it_was_selected_from_and_refuses_a_changed_one(budget: int) -> None:
    """A selection keeps the table, not a copy of it (a copy per turn was linear in the table): its whole-table
    answers hold while the table is as selected, and after any change they refuse rather than describe a table
    the selection was never made from."""
    rng = random.Random(11)
    table = PageTable(replace(_page(rng, f"p{i:02d}"), deleted=False) for i in range(30))
    _check(table, {}, budget, SelectorPolicy(), {}, {})  # read whole while the table is as selected: true
    sel = select(table, {}, budget, SelectorPolicy(), {})
    assert sel.table_size == 30
    table["p00"] = replace(table["p00"], version=2)
    for read in (lambda: sel.choices, sel.shown_rows, lambda: sel.level_of("p01") if budget > 40 else sel.choices):
        with pytest.raises(RuntimeError, match="changed after this selection"):
            read()
    assert sel.table_size == 30  # counted when selected


def test_a_page_stored_under_another_id_is_refused() -> None:
    page = _page(random.Random(1), "a")
    with pytest.raises(KeyError):
        PageTable()["b"] = page


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        ("a", "b"),
        ("ab", "abc"),
        ("", "a"),
        ("a/b", "a0"),
        ("p-1", "p.1"),
        ("z9", "za"),
        ("é", "éa"),
        ("a", "é"),
        ("aé", "b"),
    ],
)
def test_reversed_key_reverses_string_order(smaller: str, larger: str) -> None:
    assert smaller < larger
    assert reversed_key(smaller) > reversed_key(larger)


@pytest.mark.parametrize("block", [1, 2, 3, 64])
def test_cost_order_finds_the_next_key_that_fits(block: int) -> None:
    rng = random.Random(block)
    model: dict[int, int] = {k: rng.randint(0, 40) for k in rng.sample(range(201), 60)}
    order: CostOrder[int] = CostOrder.of(model.items(), block)  # built at once, then changed key by key
    for step in range(1500):
        key = rng.randint(0, 200)
        if key in model and rng.random() < 0.45:
            order.remove(key)
            del model[key]
        elif key not in model:
            model[key] = rng.randint(0, 40)
            order.add(key, model[key])
        keys = sorted(model)
        assert order.keys() == keys and len(order) == len(keys), step
        limit, start = rng.randint(0, 45), rng.randint(-1, 201)
        pos = order.locate(start)
        want = [k for k in keys if k >= start and model[k] <= limit]
        got: list[int] = []
        hit = order.next_within(pos, limit)
        while hit is not None:
            key_at, cost = order.at(hit)
            assert cost == model[key_at] <= limit
            got.append(key_at)
            hit = order.next_within(order.after(hit), limit)
        assert got == want, step
    with pytest.raises(KeyError):
        order.remove(1000)
