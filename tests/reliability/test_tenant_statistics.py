"""A tenant cannot learn about another tenant's documents from its own rankings (issue 14 item 4).

BM25's IDF is a corpus statistic: computed over the whole collection, tenant B's writes move tenant A's
scores, so B can probe whether a term occurs in A's documents (or A in B's) by watching its own results. The
attack: B ingests, re-ingests and deletes documents full of A's query terms, and A's ranking and scores must
stay byte-identical, through the mirror (local mode) and through the server code path (QdrantStore, run
against qdrant-client's local mode, which receives the same requests as a server).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Sequence

import pytest

from chatbot.providers.local_models import BM25SparseEmbedder
from chatbot.settings import QdrantSettings
from chatbot.stores.base import ChunkRecord, QueryVectors, SearchMode, VectorStore
from chatbot.stores.factory import vector_store
from chatbot.stores.qdrant.store import Operation, QdrantStore, T

DIMS = 16
BM25 = BM25SparseEmbedder()
A_TEXTS = [
    "Zymurgy is the study of fermentation in brewing and winemaking.",
    "Yeast converts sugar into alcohol during fermentation.",
    "The brewery logs every batch of hops, malt and water chemistry.",
    "Winemaking starts with crushing grapes and a careful zymurgy of the must.",
    "Cellar temperature changes how quickly a beer ferments.",
    "Distillation concentrates alcohol after fermentation ends.",
]
QUESTIONS = ["zymurgy", "zymurgy fermentation", "brewery hops zymurgy winemaking", "alcohol yeast cellar"]
PROBE = "zymurgy zymurgy fermentation winemaking brewery hops alcohol yeast cellar distillation"


def dense(text: str) -> list[float]:
    """A deterministic vector per text (the dense side plays no part in the statistics)."""
    rnd = random.Random(hashlib.sha256(text.encode()).hexdigest())
    return [rnd.gauss(0, 1) for _ in range(DIMS)]


def records(tenant: str, doc: str, texts: Sequence[str], version: str = "v1") -> list[ChunkRecord]:
    return [
        ChunkRecord(
            tenant, doc, f"{doc}.md", doc, ("h",), i, text, hashlib.sha256(text.encode()).hexdigest(), version
        )
        for i, text in enumerate(texts)
    ]


async def write(store: VectorStore, recs: list[ChunkRecord]) -> None:
    texts = [r.text for r in recs]
    await store.upsert(recs, [dense(t) for t in texts], BM25.vectors(texts, "document"))


async def rankings(store: VectorStore, tenant: str) -> list[list[tuple[str, int, float]]]:
    """Every ranking and score the tenant sees for its questions: sparse (single, RRF and DBSF fused) and
    hybrid (RRF, DBSF), one list of (doc, chunk, score) per search."""
    seen = []
    for question in QUESTIONS:
        q = QueryVectors(dense=dense(question), sparse=BM25.query_vector(question))
        mode: SearchMode
        for mode in ("sparse", "hybrid"):
            for queries in ([q], [q, QueryVectors(dense=dense(PROBE), sparse=BM25.query_vector(PROBE))]):
                for fusion in ("rrf", "dbsf"):
                    hits = await store.search(
                        tenant, queries, mode=mode, limit=5, prefetch_limit=10, fusion=fusion
                    )  # type: ignore[arg-type]
                    seen.append([(h.doc_id, h.chunk_index, h.score) for h in hits])
    return seen


def unchanged(before: list[list[tuple[str, int, float]]], after: list[list[tuple[str, int, float]]]) -> None:
    """Byte-identical, except the raw cosine inside hybrid DBSF on qdrant-client's local mode: it scores
    all points in one numpy matmul whose last bit varies with the collection's size (any write, any term),
    so there the same ranking and scores within 1e-12 are required. No BM25 statistic is involved."""
    assert len(after) == len(before)
    for i, (was, now) in enumerate(zip(before, after, strict=True)):
        hybrid_dbsf = i % 8 in (5, 7)  # see the loop order in rankings()
        if not hybrid_dbsf:
            assert repr(now) == repr(was), i
        else:
            assert [h[:2] for h in now] == [h[:2] for h in was], i
            assert [h[2] for h in now] == pytest.approx([h[2] for h in was], rel=1e-12), i


@pytest.fixture(params=["mirror", "server-path", "edge"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[VectorStore]:
    """Local mode with its in-memory mirror, the QdrantStore that talks to servers, or Qdrant Edge."""
    engine = "edge" if request.param == "edge" else "qdrant-local"
    opened = vector_store(
        QdrantSettings(
            path=":memory:", collection="stats", memory_index=request.param != "server-path", engine=engine
        )
    )
    await opened.open()
    await opened.ensure_collection("test/model", DIMS, sparse=True)
    try:
        yield opened
    finally:
        await opened.aclose()


class TestTenantStatistics:
    async def test_another_tenants_writes_leave_my_scores_byte_identical(self, store: VectorStore) -> None:
        """B ingesting, re-versioning and deleting documents full of A's query terms changes nothing A sees."""
        await write(store, records("a", "a-doc", A_TEXTS))
        await write(store, records("b", "b-base", ["Ordinary text about gardens and weather."]))
        before = await rankings(store, "a")
        assert all(hits and hits[0][0] == "a-doc" for hits in before)
        flood = [f"zymurgy zymurgy fermentation {PROBE} {i}" for i in range(40)]
        await write(store, records("b", "b-flood", flood))
        unchanged(before, await rankings(store, "a"))
        await write(store, records("b", "b-flood", flood[:10], version="v2"))
        await store.delete_stale("b", "b-flood", "v2")
        unchanged(before, await rankings(store, "a"))
        assert await store.delete_document("b", "b-flood") == 10
        unchanged(before, await rankings(store, "a"))

    async def test_my_own_writes_still_move_my_statistics(self, store: VectorStore) -> None:
        """The statistics are per tenant, not frozen: A's own new documents change A's IDF."""
        await write(store, records("a", "a-doc", A_TEXTS))
        before = await rankings(store, "a")
        await write(store, records("a", "a-more", [f"zymurgy notes {i}" for i in range(8)]))
        assert await rankings(store, "a") != before


class InFlightRecorder(QdrantStore):
    """A real local-mode QdrantStore that records how many client calls were in flight at once."""

    def __init__(self, settings: QdrantSettings) -> None:
        super().__init__(settings)
        self.in_flight = self.peak = self.calls = 0

    async def run(self, operation: Operation[T]) -> T:
        self.in_flight += 1
        self.calls += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super().run(operation)
        finally:
            self.in_flight -= 1


class TestHostileQuestions:
    async def test_a_question_of_a_thousand_distinct_words_is_bounded_and_exact(self) -> None:
        """A 4,000-character question of distinct words: the server path counts each term once, at most 16
        counts in flight, and ranks exactly as the mirror's in-memory statistics do."""
        words = [f"w{i}" for i in range(900)]
        question = " ".join(words)[:4000] + " zymurgy"
        server = InFlightRecorder(QdrantSettings(path=":memory:", collection="hostile"))
        mirror = vector_store(QdrantSettings(path=":memory:", collection="hostile-m", engine="qdrant-local"))
        embedded = vector_store(QdrantSettings(path=":memory:", collection="hostile-e", engine="edge"))
        stores: list[VectorStore] = [server, mirror, embedded]
        for s in stores:
            await s.open()
            await s.ensure_collection("test/model", DIMS, sparse=True)
            await write(s, records("a", "a-doc", [*A_TEXTS, " ".join(words[:300]), " ".join(words[200:700])]))
        try:
            q = QueryVectors(dense=dense(question), sparse=BM25.query_vector(question))
            raw = QueryVectors(dense=dense("zymurgy"), sparse=BM25.query_vector("zymurgy fermentation"))
            assert len(q.sparse.indices) > 800  # type: ignore[union-attr]
            server.calls = server.peak = 0
            await server.search("a", [q, raw], mode="hybrid", limit=8, prefetch_limit=20)
            unique = len(set(q.sparse.indices) | set(raw.sparse.indices))  # type: ignore[union-attr]
            assert server.calls == unique + 2  # one count per term, one for N, one query
            assert 1 < server.peak <= 16
            got = await server.search("a", [q], mode="sparse", limit=10)
            want = await mirror.search("a", [q], mode="sparse", limit=10)
            assert 2 < len(want) < 10  # every matching chunk is listed: the comparison ignores how ties break
            assert {(h.doc_id, h.chunk_index): h.score for h in got} == pytest.approx(
                {(h.doc_id, h.chunk_index): h.score for h in want}, rel=1e-6
            )
            # Edge weighs all terms in one call, summing ~800 products in float32: equal within float32 error
            by_edge = await embedded.search("a", [q], mode="sparse", limit=10)
            assert {(h.doc_id, h.chunk_index): h.score for h in by_edge} == pytest.approx(
                {(h.doc_id, h.chunk_index): h.score for h in want}, rel=2e-5
            )
        finally:
            for s in stores:
                await s.aclose()
