"""Replay: trace validation, determinism, policies as engine configurations, the paper's expectations, CLI,
and parity between the in-process replay and a real MCP server over stdio."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from clawvm_mcp.engine import EnginePolicy
from clawvm_mcp.replay import POLICIES, POLICY_NAMES, TraceError, get_policy, parse_lines, replay, with_switch
from clawvm_mcp.replay.cli import main as cli_main
from clawvm_mcp.replay.policies import SWITCHES
from clawvm_mcp.replay.report import sweep
from clawvm_mcp.replay.workloads import FAMILIES, GENERATORS, STRESS, generate

pytestmark = pytest.mark.anyio
BUDGETS = (120, 180, 240, 300, 380, 500)
START = '{"op":"session_start","session":"s1","budget":300}'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------- validation

BAD = [
    ([START, '{"op":"foo","turn":1}'], "t.jsonl:2: unknown op 'foo'"),
    ([START, "{not json"], "t.jsonl:2: not valid JSON"),
    (['{"op":"assemble","turn":1}'], "t.jsonl:1: op 'assemble' before any session_start"),
    ([START, '{"op":"assemble","turn":3}', '{"op":"assemble","turn":2}'], "t.jsonl:3: turn 2 goes backwards"),
    (
        [START, '{"op":"page","turn":1,"page":{"page_id":"a","type":"plan","content":"x","tokens":{"full":3}}}'],
        "t.jsonl:2: page 'a' needs exactly one of 'content' or 'tokens'",
    ),
    ([START, '{"op":"page","turn":1,"page":{"page_id":"a","type":"memo","content":"x"}}'], "t.jsonl:2: page type"),
    (
        [START, '{"op":"page","turn":1,"page":{"page_id":"a","type":"plan","tokens":{"huge":3,"full":9}}}'],
        "t.jsonl:2: page 'a': unknown level 'huge'",
    ),
    (
        [START, '{"op":"page","turn":1,"page":{"page_id":"a","type":"plan","content":"x","base_utility":NaN}}'],
        "t.jsonl:2: page 'base_utility' must be a finite non-negative number, got nan",
    ),
    (
        [START, '{"op":"page","turn":1,"page":{"page_id":"a","type":"plan","content":"x","recompute_cost":Infinity}}'],
        "t.jsonl:2: page 'recompute_cost' must be a finite non-negative number, got inf",
    ),
    ([START, '{"op":"demand","turn":1,"page_id":"a","fidelity":"none"}'], "t.jsonl:2: fidelity must be one of"),
    ([START, '{"op":"demand","turn":1,"page_id":"Bad Id"}'], "t.jsonl:2: 'page_id' must be a page id"),
    (
        [START, '{"op":"tool","turn":1,"name":"read","args":{},"result_page":"ev/x"}'],
        "t.jsonl:2: result_page 'ev/x' is not defined by an earlier page event",
    ),
    ([START, '{"op":"assemble","turn":1,"budget":5}'], "t.jsonl:2: unknown key 'budget' for op 'assemble'"),
    ([START, '{"op":"recall","turn":1,"query":"q","backend":"maybe"}'], "t.jsonl:2: backend must be ok"),
    (
        [START, '{"op":"tool","turn":1,"name":"Bash","args":{},"idempotent":"no"}'],
        "t.jsonl:2: 'idempotent' must be true or false, got 'no'",
    ),
    (['{"op":"session_start","session":"bad id!"}'], "t.jsonl:1: session id 'bad id!'"),
    ([], "t.jsonl: empty trace"),
]


@pytest.mark.parametrize(("lines", "message"), BAD)
def test_bad_traces_name_the_line(lines: list[str], message: str) -> None:
    with pytest.raises(TraceError) as err:
        parse_lines(lines, "t.jsonl")
    assert str(err.value).startswith(message)


def test_design_example_parses() -> None:
    trace = parse_lines(
        [
            START,
            '{"op":"page","turn":1,"page":{"page_id":"rules","type":"bootstrap","tokens":{"full":80,"compressed":40,'
            '"structured":20,"pointer":6}}}',
            '{"op":"page","turn":2,"page":{"page_id":"ev/a.py","type":"evidence","content":"def f(): pass"}}',
            '{"op":"demand","turn":3,"page_id":"rules","fidelity":"structured"}',
            '{"op":"tool","turn":3,"name":"read_file","args":{"path":"a.py"},"result_page":"ev/a.py"}',
            '{"op":"recall","turn":4,"query":"deploy rules","backend":"denied","expect":["rules"]}',
            '{"op":"assemble","turn":4}',
            '{"op":"compaction","turn":5}',
            '{"op":"reset","turn":9}',
            '{"op":"session_end","turn":12}',
        ],
        "x.jsonl",
    )
    assert [e.op for e in trace.events][-3:] == ["compaction", "reset", "session_end"]
    assert trace.result_pages == frozenset({"ev/a.py"})


async def test_prescribed_tokens_are_what_assembly_spends() -> None:
    trace = parse_lines(
        [
            START,
            '{"op":"page","turn":1,"page":{"page_id":"rules","type":"bootstrap","tokens":{"full":80,"structured":20}}}',
            '{"op":"demand","turn":1,"page_id":"rules","fidelity":"full"}',
            '{"op":"assemble","turn":1}',
        ],
        "t.jsonl",
    )
    metrics = (await replay(trace, "clawvm", 100)).metrics
    assert metrics["tokens_used"] == {"min": 80, "max": 80, "mean": 80.0}
    assert (await replay(trace, "clawvm", 79)).metrics["physical_insufficiency"] == 1


# ---------------------------------------------------------------- policies


def test_policies_are_engine_configurations() -> None:
    assert tuple(POLICIES) == POLICY_NAMES
    for policy in POLICIES.values():
        assert isinstance(policy.engine, EnginePolicy)
    assert get_policy("oracle").engine.horizon == 3
    assert get_policy("oracle").engine.selector.upgrade_mode == "oracle"
    assert {n: POLICIES[n].engine.typed_recall for n in POLICY_NAMES} == {
        "retrieval": False,
        "retrieval_cache": False,
        "compaction_hybrid": False,
        "lru": True,
        "clawvm": True,
        "oracle": True,
    }
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        get_policy("nope")


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_is_independent(switch: str) -> None:
    base = get_policy("clawvm")
    off = with_switch(base, switch, False)
    changed = {k for k, v in off.switches().items() if base.switches()[k] != v}
    assert changed == {switch}
    assert with_switch(off, switch, True).switches() == base.switches()


# ---------------------------------------------------------------- determinism


async def test_replay_is_byte_identical_on_rerun() -> None:
    trace = parse_lines(generate("evidence_heavy", 3).splitlines(), "evidence_heavy.jsonl")
    for policy in ("oracle", "retrieval"):
        first = await replay(trace, policy, 180)
        second = await replay(trace, policy, 180)
        assert first.to_json(with_timing=False) == second.to_json(with_timing=False)
        assert "timing" not in first.metrics and "overhead_us_per_turn" in first.timing


def test_workloads_are_seeded_and_deterministic() -> None:
    for name in GENERATORS:
        assert generate(name, 5) == generate(name, 5)
        parse_lines(generate(name, 5).splitlines(), name)
        parse_lines(generate(name, 5, content=True).splitlines(), name)
    assert generate("evidence_heavy", 1) != generate("evidence_heavy", 2)


# ---------------------------------------------------------------- the paper's expectations


@pytest.fixture(scope="module", params=[0, 11])
def sweep_rows(request: pytest.FixtureRequest) -> list[dict[str, object]]:
    import anyio

    traces = [parse_lines(generate(n, request.param).splitlines(), n) for n in (*FAMILIES, *STRESS)]
    policies = [get_policy(n) for n in POLICY_NAMES]
    return anyio.run(sweep, traces, policies, BUDGETS).rows


def _rows(rows: list[dict[str, object]], **match: object) -> list[dict[str, object]]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def test_clawvm_and_lru_have_no_faults_wherever_the_floor_fits(sweep_rows: list[dict[str, object]]) -> None:
    for name in ("clawvm", "lru", "oracle"):
        for row in _rows(sweep_rows, policy=name):
            if row["fits"]:
                assert row["faults_total"] == 0, row
            else:
                short = row["physical_insufficiency"]
                assert isinstance(short, int) and short > 0  # reported, never a silent zero-fault success
    assert any(not r["fits"] for r in _rows(sweep_rows, trace="starvation"))


def test_oracle_matches_clawvm(sweep_rows: list[dict[str, object]]) -> None:
    for row in _rows(sweep_rows, policy="clawvm"):
        twin = _rows(sweep_rows, policy="oracle", trace=row["trace"], budget=row["budget"])[0]
        assert twin["faults_total"] == row["faults_total"]


def test_baselines_are_ordered_on_mean_faults(sweep_rows: list[dict[str, object]]) -> None:
    family = [r for r in sweep_rows if r["trace"] in FAMILIES]

    def mean(name: str) -> float:
        return statistics.fmean(int(str(r["faults_total"])) for r in _rows(family, policy=name))

    assert mean("retrieval") >= mean("retrieval_cache") >= mean("compaction_hybrid") >= mean("clawvm") == 0
    assert mean("compaction_hybrid") > 0


def test_family_floors_fit_the_smallest_budget(sweep_rows: list[dict[str, object]]) -> None:
    assert all(r["fits"] for r in sweep_rows if r["trace"] in FAMILIES)


# ---------------------------------------------------------------- CLI


def test_cli_workloads_replay_and_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = tmp_path / "wl"
    assert cli_main(["workloads", "--out", str(wl), "--seed", "2", "--only", "dirty_reset,churn"]) == 0
    capsys.readouterr()
    assert (
        cli_main(
            ["replay", str(wl / "dirty_reset.jsonl"), "--policy", "compaction_hybrid", "--budget", "180", "--json"]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["policy"] == "compaction_hybrid" and doc["faults"]["flush_miss"] > 0
    out = tmp_path / "out"
    args = [
        "sweep",
        "--workloads",
        str(wl),
        "--policies",
        "clawvm,retrieval",
        "--budgets",
        "120,500",
        "--out",
        str(out),
        "--no-ablation",
    ]
    assert cli_main(args) == 0
    first = (out / "summary.json").read_bytes()
    assert cli_main(args) == 0
    assert (out / "summary.json").read_bytes() == first
    assert (out / "runs.csv").read_text().count("\n") == 1 + 2 * 2 * 2
    assert "| clawvm | 0.0 |" in (out / "summary.md").read_text()


def test_cli_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(START + '\n{"op":"foo","turn":1}\n')
    assert cli_main(["replay", str(bad)]) == 2
    assert "bad.jsonl:2: unknown op 'foo'" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text(generate("churn", 0))
    assert cli_main(["replay", str(good), "--policy", "lru", "--via", "mcp"]) == 2
    assert "clawvm policy only" in capsys.readouterr().err
    assert cli_main(["replay", str(good), "--via", "mcp"]) == 2
    assert "--content" in capsys.readouterr().err


# ---------------------------------------------------------------- parity with the MCP server


async def test_via_mcp_gives_identical_counts() -> None:
    from clawvm_mcp.replay.mcp_backend import McpBackend

    trace = parse_lines(generate("cascade_reset", 4, content=True).splitlines(), "cascade_reset.jsonl")
    for budget in (250, 600):
        local = (await replay(trace, "clawvm", budget)).metrics
        remote = (await replay(trace, "clawvm", budget, await McpBackend.launch())).metrics
        for key in ("faults", "faults_total", "duplicate_signature", "hits", "thrash", "physical_insufficiency"):
            assert remote[key] == local[key], key


# ---------------------------------------------------------------- tool idempotency and what MCP cannot carry

REPEATS = [
    START,
    '{"op":"tool","turn":1,"name":"run","args":{"cmd":"pytest"}%s}',
    '{"op":"assemble","turn":1}',
    '{"op":"tool","turn":2,"name":"run","args":{"cmd":"pytest"}%s}',
    '{"op":"assemble","turn":2}',
]


def _repeats(flag: str) -> list[str]:
    return [line % flag if "%s" in line else line for line in REPEATS]


def test_tool_events_are_idempotent_unless_they_say_not() -> None:
    default = parse_lines(_repeats(""), "t.jsonl").events[1]
    assert default.op == "tool" and default.idempotent is True
    assert parse_lines(_repeats(',"idempotent":false'), "t.jsonl").events[1].idempotent is False


async def test_a_non_idempotent_repeat_is_never_answered_from_memory() -> None:
    from clawvm_mcp.replay.mcp_backend import McpBackend

    same = parse_lines(_repeats(""), "same.jsonl")
    write_like = parse_lines(_repeats(',"idempotent":false'), "write_like.jsonl")
    assert (await replay(same, "clawvm")).metrics["duplicate_signature"] == 1
    local = (await replay(write_like, "clawvm")).metrics
    assert local["duplicate_signature"] == 0
    remote = (await replay(write_like, "clawvm", None, await McpBackend.launch())).metrics
    assert remote["duplicate_signature"] == 0 and remote["faults"] == local["faults"]


UTILITY = [
    START,
    '{"op":"page","turn":1,"page":{"page_id":"a","type":"evidence","content":"some text","base_utility":2.5}}',
    '{"op":"assemble","turn":1}',
]


async def test_via_mcp_refuses_a_trace_that_sets_utilities() -> None:
    """page_write cannot carry base_utility/recompute_cost: a --via mcp replay refuses, never silently ignores."""
    from clawvm_mcp.replay import ReplayError
    from clawvm_mcp.replay.mcp_backend import McpBackend

    trace = parse_lines(UTILITY, "u.jsonl")
    assert (await replay(trace, "clawvm")).metrics["faults_total"] == 0  # in process it replays
    with pytest.raises(ReplayError, match=r"^u.jsonl:2: page 'a' sets base_utility/recompute_cost, which MCP cannot"):
        await replay(trace, "clawvm", None, await McpBackend.launch())


def test_cli_via_mcp_names_the_utility_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text("\n".join(UTILITY) + "\n")
    assert cli_main(["replay", str(path), "--via", "mcp"]) == 2
    err = capsys.readouterr().err
    assert "u.jsonl:2: page 'a' sets base_utility/recompute_cost" in err and "without --via mcp" in err
