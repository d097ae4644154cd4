"""Seeded synthetic workloads: four families and the three adversarial stress tests (paper section 9.1).

The paper names only ``evidence_heavy``; the other families and all parameters are our decisions, each built
to exercise one lifecycle edge (docs/replay.md). Page sizes follow the paper's budget scale (120-500 tokens):
the minimum-fidelity set of every family fits 120 tokens, so faults there are the policy's, not the budget's.
``content=True`` turns every ``tokens`` page into generated text of about that size (for ``--via mcp``).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from pathlib import Path

from .trace import dump_events

Record = dict[str, object]
FAMILIES = ("evidence_heavy", "bootstrap_compaction", "dirty_reset", "multi_session_churn")
STRESS = ("starvation", "churn", "cascade_reset")
_WORDS = (
    "alpha build cache delta engine fetch graph handler index journal kernel layer module node output parser "
    "query router schema token update vector worker yield buffer commit deploy feature merge patch release"
).split()


def sizes(full: int) -> dict[str, int]:
    return {"full": full, "compressed": max(2, full // 3), "structured": max(2, full // 5), "pointer": 5}


class _Gen:
    def __init__(self, seed: int, name: str) -> None:
        self.rng = random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))
        self.out: list[Record] = []
        self.turn = 0
        self.defined: set[str] = set()

    def session(self, sid: str, budget: int = 300, project: str = "default") -> None:
        self.out.append({"op": "session_start", "session": sid, "budget": budget, "project": project})

    def page(self, pid: str, kind: str, full: int, dirty: bool = False, **extra: object) -> None:
        rec: Record = {
            "op": "page",
            "turn": self.turn,
            "page": {"page_id": pid, "type": kind, "tokens": sizes(full), **extra},
        }
        if dirty:
            rec["dirty"] = True
        self.out.append(rec)
        self.defined.add(pid)

    def demand(self, pid: str, fidelity: str = "full") -> None:
        self.out.append({"op": "demand", "turn": self.turn, "page_id": pid, "fidelity": fidelity})

    def read(self, path: str, full: int, fidelity: str = "full") -> str:
        pid = f"ev/{path}"
        if pid not in self.defined:
            self.page(pid, "evidence", full)
        self.out.append(
            {"op": "tool", "turn": self.turn, "name": "read_file", "args": {"path": path}, "result_page": pid}
        )
        self.demand(pid, fidelity)
        return pid

    def recall(self, query: str, backend: str = "ok", expect: tuple[str, ...] = ()) -> None:
        self.out.append({"op": "recall", "turn": self.turn, "query": query, "backend": backend, "expect": list(expect)})

    def op(self, name: str) -> None:
        self.out.append({"op": name, "turn": self.turn})

    def chatter(self) -> None:
        self.page(f"conv/t{self.turn:03d}", "conversation", self.rng.randint(8, 20))

    def prelude(self, extra_boot: bool = False) -> None:
        self.page("boot/rules", "bootstrap", 60)
        if extra_boot:
            self.page("boot/style", "bootstrap", 40)
        self.page("con/safety", "constraint", 30)
        self.page("plan/main", "plan", 45)


def _evidence_heavy(g: _Gen) -> None:
    g.session("s1")
    g.turn = 1
    g.prelude()
    read: list[str] = []
    for t in range(1, 37):
        g.turn = t
        g.chatter()
        if not read or g.rng.random() < 0.55:
            path = f"src/m{len(read):02d}.py"
            read.append(path)
            g.read(path, g.rng.randint(30, 60))
        else:
            path = read[max(0, len(read) - 1 - min(len(read) - 1, int(g.rng.expovariate(0.5))))]
            g.read(path, 0, g.rng.choice(("compressed", "structured")))
        if t % 6 == 0 and len(read) > 3:
            g.demand(f"ev/{read[g.rng.randrange(len(read) - 2)]}", "structured")
        if t % 8 == 0:
            g.page("plan/main", "plan", 45 + t // 4, dirty=True)
        if t == 18:
            g.recall("m01", expect=("ev/src/m01.py",))
        if t == 30:
            g.recall("deploy notes", backend="error")
        g.op("assemble")
        if t in (12, 24):
            g.op("compaction")
    g.turn = 37
    g.op("session_end")


def _bootstrap_compaction(g: _Gen) -> None:
    g.session("s1")
    g.turn = 1
    g.prelude(extra_boot=True)
    for t in range(1, 31):
        g.turn = t
        g.chatter()
        if t % 2:
            g.chatter()
        g.read(f"logs/run{t % 9}.txt", g.rng.randint(40, 64))
        if t % 5 == 0:
            g.op("compaction")
            g.demand(f"ev/logs/run{t % 9}.txt", "full")
        if t % 7 == 0:
            g.page("plan/main", "plan", 40 + t, dirty=True)
        g.op("assemble")
    g.turn = 31
    g.op("session_end")


def _dirty_reset(g: _Gen) -> None:
    g.session("s1")
    g.turn = 1
    g.prelude()
    g.page("pref/editor", "preference", 16)
    g.page("pref/format", "preference", 14)
    for t in range(1, 31):
        g.turn = t
        g.chatter()
        if t % 3 == 0:
            g.read(f"docs/d{t % 5}.md", g.rng.randint(30, 55))
        if t % 2 == 0:
            g.page("plan/main", "plan", 40 + t, dirty=True)
        if t % 5 == 0:
            g.page(g.rng.choice(("pref/editor", "pref/format")), "preference", 16 + t % 4, dirty=True)
        g.demand("plan/main", "structured")
        g.op("assemble")
        if t % 10 == 4:
            g.op("compaction")
        if t % 7 == 6:
            g.op("reset")
    g.turn = 31
    g.op("session_end")


def _multi_session_churn(g: _Gen) -> None:
    turn = 0
    for n in range(1, 5):
        g.session(f"s{n}")
        turn += 1
        g.turn = turn
        if n == 1:
            g.page("boot/rules", "bootstrap", 60)
            g.page("pref/tone", "preference", 14)
        g.page("con/safety", "constraint", 30)
        g.page("plan/main", "plan", 40)
        read: list[str] = []
        for _ in range(8):
            turn += 1
            g.turn = turn
            g.chatter()
            if read and g.rng.random() < 0.4:
                g.read(read[g.rng.randrange(len(read))], 0, "compressed")
            else:
                read.append(f"s{n}/f{len(read)}.py")
                g.read(read[-1], g.rng.randint(30, 60))
            if turn % 3 == 0:
                g.page("plan/main", "plan", 40 + turn % 7, dirty=True)
            g.demand("pref/tone", "pointer")
            g.op("assemble")
        g.page("pref/tone", "preference", 14 + n, dirty=True)
        turn += 1
        g.turn = turn
        g.op("session_end")


def _starvation(g: _Gen) -> None:
    """The hard-pinned floor grows past the small budgets: physical insufficiency, never counted as success."""
    g.session("s1")
    g.turn = 1
    g.prelude()
    for t in range(1, 25):
        g.turn = t
        if t % 2 == 0:
            g.page(f"con/c{t:02d}", "constraint", 70)
        g.read(f"src/x{t % 4}.py", 45)
        g.op("assemble")
        if t % 8 == 0:
            g.op("compaction")
    g.turn = 25
    g.op("session_end")


def _churn(g: _Gen) -> None:
    """A working set ten times the budget, re-read at random: every evicted result is asked for again."""
    g.session("s1")
    g.turn = 1
    g.prelude()
    seen: list[str] = []
    for t in range(1, 41):
        g.turn = t
        seen.append(g.read(f"lib/f{g.rng.randrange(20):02d}.py", 50))
        if t > 20:
            g.demand(seen[g.rng.randrange(len(seen))], "structured")
        g.op("assemble")
        if t % 10 == 0:
            g.op("compaction")
    g.turn = 41
    g.op("session_end")


def _cascade_reset(g: _Gen) -> None:
    """Boundaries back to back, with dirty state and a bootstrap check between each."""
    g.session("s1")
    g.turn = 1
    g.prelude(extra_boot=True)
    for t in range(1, 21):
        g.turn = t
        g.page("plan/main", "plan", 40 + t, dirty=True)
        g.read(f"cfg/c{t % 3}.yaml", 40)
        g.op("assemble")
        if t % 4 == 0:
            g.op("compaction")
            g.page("pref/cascade", "preference", 12 + t % 5, dirty=True)
            g.op("reset")
            g.op("assemble")
            g.op("compaction")
            g.op("reset")
    g.turn = 21
    g.op("session_end")


GENERATORS: dict[str, Callable[[_Gen], None]] = {
    "evidence_heavy": _evidence_heavy,
    "bootstrap_compaction": _bootstrap_compaction,
    "dirty_reset": _dirty_reset,
    "multi_session_churn": _multi_session_churn,
    "starvation": _starvation,
    "churn": _churn,
    "cascade_reset": _cascade_reset,
}


def _text(rng: random.Random, kind: str, pid: str, full: int) -> str:
    """About ``full`` tokens of text that still has the type's floor fields (one word is about one token)."""
    words = [rng.choice(_WORDS) for _ in range(max(4, full - 6))]
    lines = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
    if kind == "bootstrap":
        return "\n".join([f"{pid} rules", *(f"- {ln}" for ln in lines)])
    if kind == "plan":
        return "\n".join([f"Plan {pid}", *(f"- [ ] {ln}" for ln in lines)])
    if kind == "preference":
        return f"{pid}: " + " ".join(words)
    return "\n".join([f"{pid}", *lines])


def with_content(records: list[Record], seed: int) -> list[Record]:
    """Replace every page's ``tokens`` by generated text; sizes of repeated reads keep their first content."""
    rng = random.Random(seed)
    out: list[Record] = []
    for rec in records:
        page = rec.get("page")
        if isinstance(page, dict) and "tokens" in page:
            tokens = page.pop("tokens")
            assert isinstance(tokens, dict)
            page = {**page, "content": _text(rng, str(page["type"]), str(page["page_id"]), int(tokens["full"]))}
            rec = {**rec, "page": page}
        out.append(rec)
    return out


def generate(name: str, seed: int = 0, content: bool = False) -> str:
    """One workload as canonical JSONL text (byte-identical for the same name, seed and content flag)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown workload {name!r}; use one of {', '.join(GENERATORS)}")
    g = _Gen(seed, name)
    GENERATORS[name](g)
    return dump_events(with_content(g.out, seed) if content else g.out)


def write_workloads(
    out: Path, seed: int = 0, names: tuple[str, ...] = FAMILIES + STRESS, content: bool = False
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out / f"{name}.jsonl"
        path.write_text(generate(name, seed, content), encoding="utf-8")
        paths.append(path)
    return paths
