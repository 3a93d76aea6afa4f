"""The in-memory mirror and Qdrant Edge answer exactly as qdrant-client's local mode does (same ids, order and
scores): the congruence tests run for both engines against it.

Sparse scores on both sides use the searching tenant's IDF: Qdrant computes the sparse dot product of the
query weighted by per-tenant IDF (statistics.py) with the stored BM25 weights; the mirror computes it in numpy."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import models

from chatbot.providers.base import SparseVector
from chatbot.settings import QdrantSettings
from chatbot.stores.base import ChunkRecord, QueryVectors, ScoredChunk, SearchMode, VectorStore
from chatbot.stores.edge.store import EdgeStore
from chatbot.stores.factory import vector_store
from chatbot.stores.qdrant.local_index import Hit, LocalIndex
from chatbot.stores.qdrant.mirror import MirroredStore
from chatbot.stores.qdrant.points import SPARSE
from chatbot.stores.qdrant.statistics import TERMS_FIELD, uses_collection_idf
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.stores.records import Fusion

DIMS = 24
TENANTS = ("a", "b", "c")


def corpus(
    seed: int = 7, docs: int = 30, chunks: int = 6
) -> tuple[list[ChunkRecord], list[list[float]], list[SparseVector]]:
    rnd = random.Random(seed)
    records, dense, sparse = [], [], []
    for d in range(docs):
        tenant = TENANTS[d % len(TENANTS)]
        for c in range(chunks):
            records.append(
                ChunkRecord(
                    tenant, f"doc{d}", f"doc{d}.md", f"Doc {d}", ("h",), c, f"text {d} {c}", f"h{d}-{c}", "v1"
                )
            )
            dense.append([rnd.gauss(0, 1) for _ in range(DIMS)])
            terms = sorted(rnd.sample(range(60), rnd.randint(1, 8)))
            sparse.append(SparseVector(terms, [round(rnd.uniform(0.2, 1.5), 3) for _ in terms]))
    return records, dense, sparse


def queries(seed: int, n: int = 25) -> list[QueryVectors]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        terms = sorted(rnd.sample(range(60), rnd.randint(1, 4)))
        out.append(
            QueryVectors(
                dense=[rnd.gauss(0, 1) for _ in range(DIMS)], sparse=SparseVector(terms, [1.0] * len(terms))
            )
        )
    return out


ENGINES = ("mirror", "edge")  # the stores compared with qdrant-client's local mode


async def open_store(
    name: str, *, mirror: bool, path: str = ":memory:", engine: str = "mirror"
) -> QdrantStore | MirroredStore | EdgeStore:
    """qdrant-client's local mode (mirror=False), or the engine compared with it: its mirror, or Edge."""
    kind = "edge" if mirror and engine == "edge" else "qdrant-local"
    store = vector_store(QdrantSettings(path=path, collection=name, memory_index=mirror, engine=kind))  # type: ignore[arg-type]
    await store.open()
    await store.ensure_collection("test/model", DIMS, sparse=True)
    return store


def same(a: list, b: list) -> None:  # type: ignore[type-arg]
    assert [s.doc_id + str(s.chunk_index) for s in a] == [s.doc_id + str(s.chunk_index) for s in b]
    for x, y in zip(a, b, strict=True):
        assert x.score == pytest.approx(y.score, rel=1e-4, abs=1e-6)
        assert x.text == y.text
        assert x.heading_path == y.heading_path


async def compare(mirrored: VectorStore, native: VectorStore, seed: int, fusion: Fusion = "rrf") -> int:
    checked = 0
    qs = queries(seed)
    for tenant in TENANTS:
        for i, q in enumerate(qs):
            mode: SearchMode
            fuse: Fusion
            for mode, qlist, threshold, fuse in (
                ("dense", [q], None, fusion),
                ("dense", [q], 0.2, fusion),
                ("sparse", [q], None, fusion),
                ("hybrid", [q], None, fusion),
                ("hybrid", [q, qs[(i + 1) % len(qs)]], None, fusion),
                ("hybrid", [q], None, "dbsf"),
            ):
                kwargs = {
                    "mode": mode,
                    "limit": 7,
                    "prefetch_limit": 15,
                    "score_threshold": threshold,
                    "fusion": fuse,
                }
                same(
                    await mirrored.search(tenant, qlist, **kwargs),
                    await native.search(tenant, qlist, **kwargs),
                )  # type: ignore[arg-type]
                checked += 1
    return checked


@pytest.mark.parametrize("engine", ENGINES)
class TestMirror:
    async def test_same_answers_as_qdrant_local_mode(self, engine: str) -> None:
        """Dense (with and without threshold), sparse (tenant IDF), RRF over 2 and 4 prefetches match Qdrant."""
        records, dense, sparse = corpus()
        mirrored = await open_store("m1", mirror=True, engine=engine)
        native = await open_store("n1", mirror=False)
        try:
            assert isinstance(mirrored, MirroredStore if engine == "mirror" else EdgeStore)
            assert isinstance(native, QdrantStore)
            for store in (mirrored, native):
                await store.upsert(records, dense, sparse)
            assert await compare(mirrored, native, seed=1) == 450
        finally:
            await mirrored.aclose()
            await native.aclose()

    async def test_dbsf_same_as_qdrant_local_mode(self, engine: str) -> None:
        """DBSF over 2 and 4 prefetches (with a threshold narrowing the dense lists) matches Qdrant's Fusion.DBSF."""
        records, dense, sparse = corpus(seed=3)
        mirrored, native = (
            await open_store("m7", mirror=True, engine=engine),
            await open_store("n7", mirror=False),
        )
        try:
            for store in (mirrored, native):
                await store.upsert(records, dense, sparse)
            assert await compare(mirrored, native, seed=4, fusion="dbsf") == 450
        finally:
            await mirrored.aclose()
            await native.aclose()

    async def test_chunks_without_terms_count_on_neither_side(self, engine: str) -> None:
        """Chunks whose BM25 vector is empty (stopwords only) are not in a tenant's N, for Qdrant nor the mirror."""
        records, dense, sparse = corpus(seed=11)
        sparse = [SparseVector([], []) if i % 4 == 0 else v for i, v in enumerate(sparse)]
        mirrored = await open_store("m5", mirror=True, engine=engine)
        native = await open_store("n5", mirror=False)
        try:
            for store in (mirrored, native):
                await store.upsert(records, dense, sparse)
            assert await compare(mirrored, native, seed=12) == 450
        finally:
            await mirrored.aclose()
            await native.aclose()

    async def test_stays_exact_through_deletes_and_new_versions(self, engine: str) -> None:
        """After a re-ingest (new version, stale chunks deleted) and a document delete, answers still match."""
        records, dense, sparse = corpus()
        mirrored = await open_store("m2", mirror=True, engine=engine)
        native = await open_store("n2", mirror=False)
        try:
            for store in (mirrored, native):
                await store.upsert(records, dense, sparse)
                await store.delete_document("a", "doc0")
                kept = [r.point_id for r in records if r.doc_id == "doc3" and r.chunk_index < 3]
                await store.set_version(kept, "v2")
                await store.delete_stale("a", "doc3", "v2")
                replaced = [r for r in records if r.doc_id == "doc6"]
                await store.upsert(replaced, dense[: len(replaced)], sparse[-len(replaced) :])
            assert await compare(mirrored, native, seed=2) == 450
            assert [await mirrored.count(t) for t in TENANTS] == [await native.count(t) for t in TENANTS]
            assert await mirrored.list_documents("a") == await native.list_documents("a")
        finally:
            await mirrored.aclose()
            await native.aclose()

    async def test_loads_an_existing_collection_from_disk(self, engine: str, tmp_path: Path) -> None:
        """A restarted server loads what is on disk and answers as before (as qdrant-client answered)."""
        records, dense, sparse = corpus(seed=3)
        native = await open_store("disk", mirror=False, path=str(tmp_path / "q"))
        await native.upsert(records, dense, sparse)
        expected = [await native.search(t, queries(4, 5), mode="hybrid", limit=5) for t in TENANTS]
        await native.aclose()
        first = await open_store("disk", mirror=True, path=str(tmp_path / engine), engine=engine)
        await first.upsert(records, dense, sparse)
        await first.aclose()
        again = await open_store("disk", mirror=True, path=str(tmp_path / engine), engine=engine)
        try:
            assert sum([await again.count(t) for t in TENANTS]) == len(records)
            for t, want in zip(TENANTS, expected, strict=True):
                same(await again.search(t, queries(4, 5), mode="hybrid", limit=5), want)
        finally:
            await again.aclose()

    async def test_tenants_stay_apart(self, engine: str) -> None:
        """The engine never returns another tenant's chunk, and a search needs a tenant."""
        records, dense, sparse = corpus()
        store = await open_store("m3", mirror=True, engine=engine)
        try:
            await store.upsert(records, dense, sparse)
            for tenant in TENANTS:
                hits = await store.search(tenant, queries(5, 3), mode="hybrid", limit=20)
                assert hits
                assert {h.doc_id for h in hits} <= {r.doc_id for r in records if r.tenant == tenant}
            with pytest.raises(ValueError, match="tenant"):
                await store.search("", queries(5, 1), mode="dense", limit=3)
        finally:
            await store.aclose()


class SearchRecorder(QdrantStore):
    """A real local-mode QdrantStore that counts the searches it is asked to run."""

    searches = 0

    async def search(self, *args: Any, **kwargs: Any) -> list[ScoredChunk]:
        self.searches += 1
        return await super().search(*args, **kwargs)


class TestFusionOnTheFastPath:
    @pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
    async def test_fused_searches_never_reach_qdrant(self, fusion: Fusion) -> None:
        """RRF and DBSF hybrid searches (one and two queries) are answered by the mirror, not local mode's loops."""
        records, dense, sparse = corpus(seed=9)
        inner = SearchRecorder(QdrantSettings(path=":memory:", collection="fast"))
        store = MirroredStore(inner)
        await store.open()
        try:
            await store.ensure_collection("test/model", DIMS, sparse=True)
            await store.upsert(records, dense, sparse)
            qs = queries(10, 2)
            for batch in ([qs[0]], qs):
                hits = await store.search("a", batch, mode="hybrid", limit=5, fusion=fusion)
                assert hits
            assert inner.searches == 0
        finally:
            await store.aclose()


class TestDbsfEdges:
    def test_an_empty_list_is_skipped_and_a_single_hit_scores_half(self) -> None:
        """A probe that found nothing (e.g. no term matched) adds nothing; a one-hit list scores 0.5, as in Qdrant."""
        hit = Hit("p1", 0.3, {})
        assert LocalIndex.dbsf([[], [hit]], 5) == [Hit("p1", 0.5, {})]
        assert LocalIndex.dbsf([[], []], 5) == []


class FilterDeleteRecorder(QdrantStore):
    """A real local-mode QdrantStore that records how it was asked to delete (by filter or by id)."""

    def __init__(self, settings: QdrantSettings) -> None:
        super().__init__(settings)
        self.deletes: list[tuple[str, int]] = []

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        self.deletes.append(("filter", 0))
        await super().delete_stale(tenant, doc_id, keep_version)

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        self.deletes.append(("filter", 0))
        return await super().delete_document(tenant, doc_id)

    async def delete_points(self, ids: Sequence[str]) -> None:
        self.deletes.append(("ids", len(ids)))
        await super().delete_points(ids)


class TestDeletesById:
    async def test_reingest_and_delete_never_scan_the_collection(self) -> None:
        """Through the mirror, stale versions and deleted documents go by id (a fresh document deletes
        nothing): local mode evaluates a delete filter over every point, which made ingestion quadratic."""
        records, dense, sparse = corpus(docs=6, chunks=4)
        inner = FilterDeleteRecorder(QdrantSettings(path=":memory:", collection="by-id"))
        store = MirroredStore(inner)
        await store.open()
        try:
            await store.ensure_collection("test/model", DIMS, sparse=True)
            await store.upsert(records, dense, sparse)
            await store.delete_stale("a", "doc0", "v1")  # a fresh document: nothing is stale
            kept = [r.point_id for r in records if r.doc_id == "doc3" and r.chunk_index < 2]
            await store.set_version(kept, "v2")
            await store.delete_stale("a", "doc3", "v2")
            assert await store.delete_document("a", "doc0") == 4
            assert await store.delete_document("a", "doc0") == 0
            assert inner.deletes == [("ids", 2), ("ids", 4)]
            assert [await inner.count(t) for t in TENANTS] == [await store.count(t) for t in TENANTS]
            assert await inner.versions_of(kept) == await store.versions_of(kept) == dict.fromkeys(kept, "v2")
        finally:
            await store.aclose()

    async def test_a_store_only_opened_deletes_what_is_on_disk(self, tmp_path: Path) -> None:
        """Opened without ensure_collection (as the CLI's delete does), the mirror still holds the collection,
        so a delete by id removes the document from disk (it used to find nothing and delete nothing)."""
        records, dense, sparse = corpus(docs=3, chunks=4)
        path = str(tmp_path / "q")
        first = await open_store("disk", mirror=True, path=path)
        await first.upsert(records, dense, sparse)
        await first.aclose()
        opened = vector_store(QdrantSettings(path=path, collection="disk", engine="qdrant-local"))
        await opened.open()
        try:
            assert isinstance(opened, MirroredStore)
            assert await opened.versions_of([records[0].point_id]) == {records[0].point_id: "v1"}
            assert await opened.delete_document("a", "doc0") == 4
        finally:
            await opened.aclose()
        again = await open_store("disk", mirror=False, path=path)
        try:
            assert await again.count("a") == 0
            assert await again.count("b") == 4
        finally:
            await again.aclose()


class TestCollectionIdfMigration:
    async def test_a_collection_built_with_qdrants_idf_modifier_is_migrated(self, tmp_path: Path) -> None:
        """A collection from before per-tenant statistics (IDF modifier, no term payload) is converted at
        start-up: modifier dropped, term ids written, and its answers match the mirror's per-tenant IDF."""
        records, dense, sparse = corpus(seed=9)
        path = str(tmp_path / "q")
        old = await open_store("old", mirror=False, path=path)
        await old.upsert(records, dense, sparse)
        idf_modifier = {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)}
        ids = [r.point_id for r in records]
        await old.run(lambda c: c.update_collection("old", sparse_vectors_config=idf_modifier))
        await old.run(lambda c: c.delete_payload("old", keys=[TERMS_FIELD], points=ids))
        await old.aclose()
        native = await open_store("old", mirror=False, path=path)  # ensure_collection migrates
        try:
            assert isinstance(native, QdrantStore)
            info = await native.run(lambda c: c.get_collection("old"))
            assert not uses_collection_idf(info, SPARSE)
            stored = await native.run(lambda c: c.retrieve("old", ids=ids[:3], with_vectors=[SPARSE]))
            assert [p.payload[TERMS_FIELD] for p in stored] == [p.vector[SPARSE].indices for p in stored]  # type: ignore[index]
            mirrored = MirroredStore(QdrantStore(QdrantSettings(path=":memory:", collection="fresh")))
            await mirrored.open()
            await mirrored.ensure_collection("test/model", DIMS, sparse=True)
            await mirrored.upsert(records, dense, sparse)
            assert await compare(mirrored, native, seed=10) == 450
            await mirrored.aclose()
        finally:
            await native.aclose()
