"""``clawvm-mcp bench recall``: how often ``recall`` finds the turns that answer a question, and what it costs.

LoCoMo (10 long conversations, 1,982 questions whose evidence names the dialog turns that hold the answer): each
conversation is one session, each turn (or, at ``--granularity session``, each conversation session) one page
written through ``page_write``; every question is asked through ``recall(limit=10)`` over a real MCP client, and
scored against its evidence. Next to it, in the same run and on the same stored texts: SQLite FTS5 bm25 with its
default tokenizer, FTS5 with porter stemming, and a random ranking. Latency is taken three ways: the MCP tool call
in process, the engine call in process (each question also ranked by FTS5's bm25() over every match, the exhaustive
baseline), and (``--stdio``) the tool call to a ``clawvm-mcp serve`` child. ``--scale PAGES`` then grows the store
with copies of the pages (``--layout sessions``: in sessions of their own; ``one``: all in conv-26's session) and
times the engine again. With the ``semantic`` extra installed, more rows on the same database: recall with the
fusion switched the other way from the server's setting (BM25 + MiniLM vectors by RRF k=60 when the server ranks by
BM25, as it does unless CLAWVM_SEMANTIC=1), the vectors' cosine ranking alone, and two unshipped fusions of the
same lists.

R@k is the share of a question's evidence pages in the top k, averaged over questions; MRR the reciprocal rank of
the first evidence page in the top 10 (0 if none). Method and numbers: docs/performance.md, "Recall".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import anyio

from ..engine import ClawVMEngine
from ..engine.session import session_namespace
from ..store.base import PageCommit
from ..store.sqlite import SQLiteStore

Granularity = Literal["turn", "session"]
Layout = Literal["sessions", "one"]
K = (1, 5, 10)
LIMIT = 10
PROV = {"source": "user", "ref": "ext:locomo", "turn": 0}
QUICK_CONVERSATIONS, QUICK_QUESTIONS = 1, 60
SCALE_BATCH = 1_000  # copies committed per transaction while --scale grows the store
VECTOR_WEIGHT = 0.2  # the weighted-RRF row's scale for the vector list (the best of 0.2-0.7 on LoCoMo)
LOW_K = 10  # the low-k RRF row: a smaller k lets each list's first ranks count for more
_DIA = re.compile(r"D(\d+):0*(\d+)$")
_WORD = re.compile(r"\w+")


def default_data() -> Path:
    """LoCoMo where the project keeps it: ``../shared/data`` beside the repository (CI lays it out the same)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "locomo" / "locomo10.json"


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    evidence: tuple[str, ...]  # page ids
    category: int


@dataclass(slots=True)
class Conversation:
    session_id: str
    pages: dict[str, str] = field(default_factory=lambda: {})  # page id -> content, in dialog order
    questions: list[Question] = field(default_factory=lambda: [])


def _page_id(dia_id: str, granularity: Granularity) -> str | None:
    m = _DIA.match(dia_id.strip())
    if m is None:
        return None
    return f"turn/d{m.group(1)}-{m.group(2)}" if granularity == "turn" else f"session/{m.group(1)}"


def load_locomo(path: Path, granularity: Granularity) -> list[Conversation]:
    """The conversations as pages, and each question's evidence as page ids (evidence naming no turn is dropped,
    and so is a question left with none: 1,982 of LoCoMo's 1,986 remain)."""
    conversations = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        conv = Conversation(session_id=f"locomo-{sample['sample_id']}")
        talk = sample["conversation"]
        numbers = sorted(int(m.group(1)) for k in talk if (m := re.fullmatch(r"session_(\d+)", k)))
        for n in numbers:
            for turn in talk[f"session_{n}"]:
                line = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    line += f" [shares {turn['blip_caption']}]"
                page_id = _page_id(turn["dia_id"], granularity)
                if page_id is None:
                    continue
                conv.pages[page_id] = f"{conv.pages[page_id]}\n{line}" if page_id in conv.pages else line
        for qa in sample["qa"]:
            parts = (p for e in qa.get("evidence") or [] for p in re.split(r"[;\s]+", e) if p)
            evidence = dict.fromkeys(pid for p in parts if (pid := _page_id(p, granularity)) in conv.pages)
            if evidence:
                conv.questions.append(Question(qa["question"], tuple(evidence), int(qa.get("category", 0))))
        conversations.append(conv)
    return conversations


@dataclass(slots=True)
class Quality:
    """R@k and MRR accumulated over questions."""

    recall: dict[int, float] = field(default_factory=lambda: dict.fromkeys(K, 0.0))
    mrr: float = 0.0
    n: int = 0

    def add(self, ranked: Sequence[str], evidence: Iterable[str]) -> None:
        wanted = set(evidence)
        for k in K:
            self.recall[k] += len(wanted & set(ranked[:k])) / len(wanted)
        self.mrr += next((1 / (i + 1) for i, pid in enumerate(ranked[:LIMIT]) if pid in wanted), 0.0)
        self.n += 1

    def figures(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {**{f"r@{k}": self.recall[k] / n for k in K}, "mrr": self.mrr / n, "questions": self.n}


@dataclass(frozen=True, slots=True)
class Latency:
    p50_ms: float
    p95_ms: float
    n: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = sorted(s * 1e3 for s in seconds)
        return cls(statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.95))], len(ms)) if ms else cls(0, 0, 0)


@dataclass(slots=True)
class Row:
    name: str
    quality: Quality | None = None
    latency: Latency | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.quality is not None:
            out.update(self.quality.figures())
        if self.latency is not None:
            out.update(p50_ms=self.latency.p50_ms, p95_ms=self.latency.p95_ms, calls=self.latency.n)
        return out


def _structured(result: Any) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"tool call failed: {result.content}")
    data: dict[str, Any] = result.structured_content
    return data


async def ingest(client: Any, conversations: Sequence[Conversation]) -> None:
    """Every page through page_write, as a harness would record a conversation (setup, not timed)."""
    for conv in conversations:
        _structured(await client.call_tool("session_start", {"session_id": conv.session_id}))
        for page_id, content in conv.pages.items():
            args = {"session_id": conv.session_id, "page_id": page_id, "op": "create", "type": "conversation"}
            written = _structured(
                await client.call_tool("page_write", {**args, "provenance": PROV, "content": content})
            )
            if written["status"] != "committed":
                raise RuntimeError(f"page_write {page_id} was {written['status']}: {written['reasons']}")


async def ask_mcp(client: Any, conversations: Sequence[Conversation]) -> tuple[Quality, Latency]:
    """Every question through the recall tool; a ``no_match`` ranks nothing, any other outcome is a failure."""
    quality, seconds = Quality(), []
    for conv in conversations:
        for q in conv.questions:
            args = {"session_id": conv.session_id, "query": q.text, "limit": LIMIT}
            t0 = time.perf_counter()
            result = await client.call_tool("recall", args)
            seconds.append(time.perf_counter() - t0)
            data = _structured(result)
            if data["outcome"] not in ("hit", "no_match"):
                raise RuntimeError(f"recall {q.text!r}: {data['outcome']} {data['detail']}")
            quality.add([r["page_id"] for r in data["results"]], q.evidence)
    return quality, Latency.of(seconds)


async def ask_engine(
    db: Path, conversations: Sequence[Conversation], only: str | None = None
) -> tuple[Quality, Latency, Latency]:
    """The same questions straight to the engine in process: what recall costs without the protocol (``only``: the
    questions of that one session). Each question is asked twice in a row, the second time with the store ranking
    by FTS5's bm25() over every matching row (the exhaustive baseline, same engine path around it)."""
    store = await SQLiteStore.open(db)
    quality, seconds, exhaustive = Quality(), [], []
    pruned = store.search
    try:
        engine = ClawVMEngine(store)
        for conv in conversations:
            if only is not None and conv.session_id != only:
                continue
            await engine.session_start(conv.session_id)
            for q in conv.questions:
                t0 = time.perf_counter()
                result = await engine.recall(conv.session_id, q.text, None, LIMIT)
                seconds.append(time.perf_counter() - t0)
                quality.add([r.page_id for r in result.results], q.evidence)
                store.search = store.search_fts  # type: ignore[method-assign]
                try:
                    t0 = time.perf_counter()
                    await engine.recall(conv.session_id, q.text, None, LIMIT)
                    exhaustive.append(time.perf_counter() - t0)
                finally:
                    store.search = pruned  # type: ignore[method-assign]
    finally:
        await store.close()
    return quality, Latency.of(seconds), Latency.of(exhaustive)


async def scale_up(db: Path, conversations: Sequence[Conversation], total: int, layout: Layout) -> str | None:
    """Grow the store to ``total`` pages with copies of the LoCoMo pages, committed through the store's own commit
    statement in batches (the index moves as in any commit). ``sessions``: each conversation copied into new
    sessions of its own (LoCoMo x N); ``one``: copies of the other conversations' turns all go into the first
    conversation's session, which is returned (the one whose questions then search ~95% of the store)."""
    store = await SQLiteStore.open(db)
    try:
        sources = []  # (conversation index, page) in dialog order
        for i, conv in enumerate(conversations):
            ns = session_namespace(conv.session_id)
            for page_id in conv.pages:
                page = await store.get_page(ns, page_id)
                if page is not None:
                    sources.append((i, page))
        big = conversations[0].session_id if layout == "one" else None
        pool = [(i, p) for i, p in sources if i != 0] if layout == "one" else sources
        missing = total - len(sources)
        batch: list[PageCommit] = []
        for n in range(max(missing, 0)):
            i, page = pool[n % len(pool)]
            copy = n // len(pool) + 1
            if big is not None:
                ns, page_id = session_namespace(big), f"copy{copy}/{conversations[i].session_id}/{page.page_id}"
            else:
                ns, page_id = session_namespace(f"{conversations[i].session_id}-x{copy}"), page.page_id
            batch.append(PageCommit(ns, replace(page, page_id=page_id, version=1), 0))
            if len(batch) == SCALE_BATCH or n == missing - 1:
                _, conflicts = await store.commit(batch)
                if conflicts:
                    raise RuntimeError(f"scaling up: {len(conflicts)} copies conflicted")
                batch = []
    finally:
        await store.close()
    return big


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "VIRTUAL_ENV", "PYTHONPATH", "LANG", "TMPDIR")}
    env["CLAWVM_LOG"] = "WARNING"
    return env


async def ask_stdio(db: Path, conversations: Sequence[Conversation], limit: int) -> Latency:
    """Up to ``limit`` questions to a ``clawvm-mcp serve`` child over stdio (latency only)."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    serve = StdioServerParameters(
        command=sys.executable, args=["-m", "clawvm_mcp", "serve", "--db", str(db)], env=_child_env()
    )
    seconds: list[float] = []
    async with Client(serve, cache=None) as c:
        for conv in conversations:
            _structured(await c.call_tool("session_start", {"session_id": conv.session_id}))
            for q in conv.questions:
                if len(seconds) >= limit:
                    return Latency.of(seconds)
                args = {"session_id": conv.session_id, "query": q.text, "limit": LIMIT}
                t0 = time.perf_counter()
                _structured(await c.call_tool("recall", args))
                seconds.append(time.perf_counter() - t0)
    return Latency.of(seconds)


def stored_pages(db: Path) -> list[tuple[str, str, str]]:
    """(namespace, page id, text) of every live page as the store holds it: id, title, content and field values,
    the same texts recall indexes, for the baselines."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT namespace, page_id, body FROM pages WHERE deleted = 0").fetchall()
    out = []
    for namespace, page_id, body in rows:
        data = json.loads(body)
        values = [str(v) for v in (data.get("fields") or {}).values()]
        out.append((namespace, page_id, "\n".join([page_id, str(data.get("title", "")), data["content"], *values])))
    return out


def fts_baseline(
    pages: Sequence[tuple[str, str, str]], conversations: Sequence[Conversation], tokenize: str
) -> tuple[Quality, Latency]:
    """Plain FTS5: one text column, the question's words each quoted and OR-ed, bm25() top 10 in the namespace."""
    quality, seconds = Quality(), []
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(
            f"CREATE VIRTUAL TABLE b USING fts5(ns UNINDEXED, page_id UNINDEXED, text, tokenize = '{tokenize}')"
        )
        conn.executemany("INSERT INTO b VALUES (?, ?, ?)", pages)
        for conv in conversations:
            namespace = next((ns for ns, _, _ in pages if ns.endswith(":" + conv.session_id)), "")
            for q in conv.questions:
                words = list(dict.fromkeys(w.lower() for w in _WORD.findall(q.text)))
                expr = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
                t0 = time.perf_counter()
                rows = conn.execute(
                    "SELECT page_id FROM b WHERE b MATCH ? AND ns = ? ORDER BY bm25(b) LIMIT ?",
                    (expr, namespace, LIMIT),
                ).fetchall()
                seconds.append(time.perf_counter() - t0)
                quality.add([r[0] for r in rows], q.evidence)
    return quality, Latency.of(seconds)


@contextmanager
def _fusion(on: bool) -> Iterator[None]:
    """Recall with the semantic fusion turned on or off (CLAWVM_SEMANTIC) for a row of the same run."""
    from .. import semantic

    before = os.environ.get(semantic.ENV)
    os.environ[semantic.ENV] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(semantic.ENV, None)
        else:
            os.environ[semantic.ENV] = before


async def semantic_rows(db: Path, conversations: Sequence[Conversation], meta: dict[str, Any]) -> list[Row]:
    """With the ``semantic`` extra, on the same database: recall with the fusion switched the other way from the
    row above (the hybrid when the server ranks by BM25, and BM25 alone when it fuses), the page vectors alone
    (cosine over the session's pages), and two fusions of the same two top-100 lists the server does not ship (the
    vector list weighted down, and k=10) to show how much a variant of the target's plain k=60 would move. Every
    page is embedded first, in batches as the background pass does, and timed: ms per ingested page; then 100
    questions embedded one by one: ms a fused recall adds."""
    from .. import semantic

    if not semantic.available():
        return []
    from .. import vectors

    fuse_now = not semantic.enabled()
    other, by_vector, weighted, low_k, seconds = Quality(), Quality(), Quality(), Quality(), []
    store = await SQLiteStore.open(db)
    try:
        engine = ClawVMEngine(store)
        index = vectors.index_for(store)
        sessions = []
        t0 = time.perf_counter()
        for conv in conversations:
            await engine.session_start(conv.session_id)
            pages = [p for p in await engine.pages(conv.session_id) if p.version > 0]
            await anyio.to_thread.run_sync(index.rank, pages, "", 1, conv.session_id)
            sessions.append(pages)
        meta["embed_ms_per_page"] = (time.perf_counter() - t0) / max(sum(map(len, sessions)), 1) * 1e3
        with _fusion(fuse_now):
            for conv in conversations:
                for q in conv.questions:
                    t0 = time.perf_counter()
                    found = await engine.recall(conv.session_id, q.text, None, LIMIT)
                    seconds.append(time.perf_counter() - t0)
                    other.add([h.page_id for h in found.results], q.evidence)
        with _fusion(False):
            for conv, pages in zip(conversations, sessions, strict=True):
                for q in conv.questions:
                    nearest = await anyio.to_thread.run_sync(index.rank, pages, q.text, vectors.DEPTH, conv.session_id)
                    ranked = [pages[i].page_id for i, _ in nearest]
                    by_vector.add(ranked, q.evidence)
                    found = await engine.recall(conv.session_id, q.text, None, vectors.DEPTH)
                    lexical = [h.page_id for h in found.results]
                    weighted.add(semantic.rrf([lexical, ranked], weights=(1.0, VECTOR_WEIGHT)), q.evidence)
                    low_k.add(semantic.rrf([lexical, ranked], k=LOW_K), q.evidence)
        encoder = vectors.encoder()
        asked = [q.text for q in conversations[0].questions[:100]]
        t0 = time.perf_counter()
        for text in asked:
            encoder.embed([text])
        meta["embed_ms_per_query"] = (time.perf_counter() - t0) / max(len(asked), 1) * 1e3
    finally:
        await store.close()
    model = semantic.MODEL.split("/")[-1]
    name = f"  BM25 + {model}, RRF k=60 (engine)" if fuse_now else "  BM25 alone (CLAWVM_SEMANTIC=0, engine)"
    return [
        Row(name, other, Latency.of(seconds)),
        Row(f"  {model} cosine alone", by_vector),
        Row(f"  weighted RRF: vectors x {VECTOR_WEIGHT} (not shipped)", weighted),
        Row(f"  RRF k={LOW_K} (not shipped)", low_k),
    ]


def random_baseline(conversations: Sequence[Conversation], seed: int = 0) -> Quality:
    rng, quality = random.Random(seed), Quality()
    for conv in conversations:
        ids = list(conv.pages)
        for q in conv.questions:
            quality.add(rng.sample(ids, min(LIMIT, len(ids))), q.evidence)
    return quality


async def run(
    data: Path,
    granularity: Granularity,
    quick: bool,
    stdio: bool,
    db_dir: Path,
    scale: int = 0,
    layout: Layout = "sessions",
) -> tuple[list[Row], dict[str, Any]]:
    from mcp import Client

    from .. import semantic
    from ..server import ServerConfig, create_server

    conversations = load_locomo(data, granularity)
    if quick:
        conversations = conversations[:QUICK_CONVERSATIONS]
        for conv in conversations:
            conv.questions = conv.questions[:QUICK_QUESTIONS]
    db = db_dir / "recall.db"
    t0 = time.perf_counter()
    async with Client(create_server(ServerConfig(db=db))) as client:
        await ingest(client, conversations)
        ingest_s = time.perf_counter() - t0
        quality, mcp_latency = await ask_mcp(client, conversations)
    rows = [Row("clawvm recall (MCP, in process)", quality, mcp_latency)]
    ranking = "BM25 + " + semantic.MODEL.split("/")[-1] + " by RRF k=60" if semantic.enabled() else "BM25"
    _, engine_latency, fts_latency = await ask_engine(db, conversations)
    rows.append(Row("  same, engine call in process", None, engine_latency))
    rows.append(Row("  same, FTS5 bm25() over every match", None, fts_latency))
    if stdio:
        rows.append(Row("  same, MCP over stdio", None, await ask_stdio(db, conversations, 300 if quick else 1000)))
    meta: dict[str, Any] = {}
    rows.extend(await semantic_rows(db, conversations, meta))
    pages = stored_pages(db)
    rows.append(Row("FTS5 bm25 (unicode61)", *fts_baseline(pages, conversations, "unicode61")))
    rows.append(Row("FTS5 bm25 + porter", *fts_baseline(pages, conversations, "porter unicode61")))
    rows.append(Row("random", random_baseline(conversations)))
    scaled = len(pages)
    db_bytes = sum(p.stat().st_size for p in db_dir.glob("recall.db*"))
    if scale > len(pages):  # after every baseline: they are figures of the LoCoMo store itself
        t1 = time.perf_counter()
        big = await scale_up(db, conversations, scale, layout)
        scale_s = time.perf_counter() - t1
        with closing(sqlite3.connect(db)) as conn:
            scaled = int(conn.execute("SELECT count(*) FROM pages WHERE deleted = 0").fetchone()[0])
        for only in (None, big) if big is not None else (None,):
            name = f"clawvm engine at {scaled:,} pages ({layout})" if only is None else f"  {only}'s questions alone"
            scaled_quality, scaled_latency, scaled_fts = await ask_engine(db, conversations, only)
            rows.append(Row(name, scaled_quality, scaled_latency))
            rows.append(Row("    same, FTS5 bm25() over every match", None, scaled_fts))
    meta |= {
        "ranking": ranking,
        "data": str(data),
        "granularity": granularity,
        "quick": quick,
        "conversations": len(conversations),
        "pages": len(pages),
        "questions": sum(len(c.questions) for c in conversations),
        "ingest_s": ingest_s,
        "db_bytes": db_bytes,
        "scaled_pages": scaled,
        "layout": layout,
    }
    if scaled > len(pages):
        meta["scale_s"] = scale_s
    return rows, meta


def render(rows: Sequence[Row], meta: dict[str, Any]) -> str:
    lines = [
        f"LoCoMo, {meta['granularity']} level{' (quick)' if meta['quick'] else ''}: {meta['conversations']} "
        f"conversations, {meta['pages']:,} pages, {meta['questions']:,} questions "
        f"(ingest {meta['ingest_s']:.1f} s over MCP, database {meta['db_bytes'] / 1e6:.1f} MB)"
        + (f"; grown to {meta['scaled_pages']:,} in {meta['scale_s']:.0f} s" if "scale_s" in meta else "")
        + f"; recall ranks by {meta['ranking']}"
        + (
            f" (model: {meta['embed_ms_per_page']:.1f} ms per page in batches, {meta['embed_ms_per_query']:.1f} ms "
            "per query)"
            if "embed_ms_per_page" in meta
            else ""
        ),
        f"{'':44} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'p50 ms':>8} {'p95 ms':>8}",
    ]
    for row in rows:
        q = row.quality.figures() if row.quality is not None else None
        cells = [f"{q[f'r@{k}']:6.3f}" for k in K] + [f"{q['mrr']:6.3f}"] if q else [" " * 6] * 4
        lat = [f"{row.latency.p50_ms:8.2f}", f"{row.latency.p95_ms:8.2f}"] if row.latency else []
        lines.append(f"{row.name:44} {' '.join(cells)} {' '.join(lat)}".rstrip())
    return "\n".join(lines)


def cmd_recall(args: argparse.Namespace) -> int:
    if not args.data.is_file():
        print(f"Error: no LoCoMo file at {args.data}; pass --data FILE (locomo10.json)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="clawvm-recall-") as tmp:
        rows, meta = anyio.run(
            run, args.data, args.granularity, args.quick, args.stdio, Path(tmp), args.scale, args.layout
        )
    print(render(rows, meta), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({**meta, "rows": [r.as_json() for r in rows]}, indent=2) + "\n")
    return 0


def register(modes: Any) -> None:
    """Add ``recall`` to the bench verb's modes (``modes`` from the bench parser's ``add_subparsers``)."""
    p = modes.add_parser(
        "recall",
        help="recall quality (R@1/5/10, MRR) and latency on LoCoMo, next to FTS5 and random baselines",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--data", type=Path, default=default_data(), metavar="FILE", help="LoCoMo's locomo10.json")
    p.add_argument("--granularity", choices=["turn", "session"], default="turn", help="one page per turn or session")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"first {QUICK_CONVERSATIONS} conversation, {QUICK_QUESTIONS} questions (CI smoke run)",
    )
    p.add_argument("--stdio", action="store_true", help="also time recall over stdio against a serve child")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON")
    p.add_argument(
        "--scale",
        type=int,
        default=0,
        metavar="PAGES",
        help="then grow the store to PAGES with copies of the LoCoMo pages and time the engine's recall again",
    )
    p.add_argument(
        "--layout",
        choices=["sessions", "one"],
        default="sessions",
        help="--scale's copies: in sessions of their own (LoCoMo x N), or all in the first conversation's session",
    )
    p.set_defaults(func=cmd_recall)
