"""The multi-process nemesis (tests/support/nemesis.py) in CI: several stdio servers, hook processes and clients on
one database file under SIGKILLs, SIGSTOPs and client cancellations; every acknowledgement must be kept.

Bounded (40 s of faults, about a minute in all on 2 cores) and seeded: ``CLAWVM_NEMESIS_SEED`` picks the schedule,
``pytest tests/test_nemesis.py --soak 600 -s`` runs the faults for ten minutes; ``-s`` prints the figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.nemesis import Settings, run_nemesis

pytestmark = pytest.mark.anyio

SEED = int(os.environ.get("CLAWVM_NEMESIS_SEED", "20261202"))
CI_SECONDS = 40.0


async def test_the_checks_find_nothing_in_a_calm_run(tmp_path: Path) -> None:
    """The control: one server, one caller, one session, no faults. If this finds a violation, the check is wrong,
    not the product; so the nemesis below fails only for what it was built to find."""
    report = await run_nemesis(tmp_path, Settings.calm(6.0, SEED))
    print("\n" + report.figures())
    assert len(report.ledger.acks) >= 200, "the control run did too little to check anything"
    assert {"committed", "staged"} <= {a.status for a in report.ledger.acks}
    assert report.violations == []


async def test_nemesis_loses_no_acknowledged_write(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    soak = request.config.getoption("--soak")
    settings = Settings(seconds=float(soak) if soak else CI_SECONDS, seed=SEED)
    report = await run_nemesis(tmp_path, settings)
    print("\n" + report.figures())
    for line in report.violations:
        print(f"  VIOLATION {line[:400]}")
    led = report.ledger
    # the run really did what it claims: many acknowledgements of each kind, every kind of fault
    assert len(led.acks) >= 500 and {"committed", "staged"} <= {a.status for a in led.acks}
    assert led.faults["server SIGKILLs"] >= 2 and led.processes["server"] >= settings.servers + 2
    assert led.faults["server SIGSTOPs"] + led.faults["server SIGSTOPs (> 5 s)"] >= 2
    assert led.faults["client cancellations"] >= 5 and led.processes["hook"] >= 3
    assert report.violations == []
