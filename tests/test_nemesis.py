"""The multi-process nemesis (tests/support/nemesis.py) in CI, on each store: several server processes, hook
processes and clients on one database under SIGKILLs, SIGSTOPs and client cancellations; every acknowledgement must
be kept.

- SQLite: stdio servers on one file, 40 s of faults (about a minute in all on 2 cores).
- PostgreSQL (when ``CLAWVM_TEST_PG`` names a server; .ci/run starts one): ``serve --http`` processes, each on its
  own port and restarted on it, sharing one fresh database, driven by streamable-HTTP clients; hook processes run
  ``clawvm-mcp lifecycle --db postgresql://...``. 30 s of the same faults, drawn more densely to fit the CI budget;
  ``PRAGMA integrity_check`` becomes tests/support/dbview.py ``integrity`` (no transaction left open, amcheck on
  every B-tree index, the row invariants). Its thresholds are lower: a commit there waits for a WAL flush and a
  call for an HTTP round trip, so fewer calls fit in the same seconds.

Seeded: ``CLAWVM_NEMESIS_SEED`` picks the schedule; ``pytest tests/test_nemesis.py --soak 600 -s`` runs the faults
for ten minutes; ``-s`` prints the figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.dbview import DB, is_postgres
from tests.support.nemesis import Settings, run_nemesis

pytestmark = pytest.mark.anyio

SEED = int(os.environ.get("CLAWVM_NEMESIS_SEED", "20261202"))


@dataclass(frozen=True)
class Floor:
    """What a run on one store must at least have done for its verdict to mean anything."""

    seconds: float  # CI length of the faults
    calm_acks: int
    acks: int
    hooks: int = 3
    fault_gap: tuple[float, float] = Settings.fault_gap
    hook_gap: tuple[float, float] = Settings.hook_gap


# PostgreSQL's floors sit well under what a run on a busy 2-core machine did (calm 89-204 acks, nemesis 139-351,
# 4-6 hook processes of ~2 s each, one at a time): they say "it really ran", not how fast
FLOORS = {
    "sqlite": Floor(40.0, 200, 500),
    "postgres": Floor(30.0, 40, 80, hooks=2, fault_gap=(0.4, 1.2), hook_gap=(0.1, 0.5)),
}


def floor(db: DB) -> Floor:
    return FLOORS["postgres" if is_postgres(db) else "sqlite"]


async def test_the_checks_find_nothing_in_a_calm_run(tmp_path: Path, store_db: DB) -> None:
    """The control: one server, one caller, one session, no faults. If this finds a violation, the check is wrong,
    not the product; so the nemesis below fails only for what it was built to find."""
    report = await run_nemesis(tmp_path, Settings.calm(6.0, SEED), store_db)
    print("\n" + report.figures())
    assert len(report.ledger.acks) >= floor(store_db).calm_acks, "the control run did too little to check anything"
    assert {"committed", "staged"} <= {a.status for a in report.ledger.acks}
    assert report.violations == []


async def test_nemesis_loses_no_acknowledged_write(
    tmp_path: Path, store_db: DB, request: pytest.FixtureRequest
) -> None:
    soak = request.config.getoption("--soak")
    least = floor(store_db)
    seconds = float(soak) if soak else least.seconds
    settings = Settings(seconds=seconds, seed=SEED, fault_gap=least.fault_gap, hook_gap=least.hook_gap)
    report = await run_nemesis(tmp_path, settings, store_db)
    print("\n" + report.figures())
    for line in report.violations:
        print(f"  VIOLATION {line[:400]}")
    led = report.ledger
    # the run really did what it claims: many acknowledgements of each kind, every kind of fault
    assert len(led.acks) >= least.acks and {"committed", "staged"} <= {a.status for a in led.acks}
    assert led.faults["server SIGKILLs"] >= 2 and led.processes["server"] >= settings.servers + 2
    assert led.faults["server SIGSTOPs"] + led.faults["server SIGSTOPs (> 5 s)"] >= 2
    assert led.faults["client cancellations"] >= 5 and led.processes["hook"] >= least.hooks
    assert report.violations == []
