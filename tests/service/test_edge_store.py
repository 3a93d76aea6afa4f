"""Qdrant Edge as the embedded store: what it promises beyond the congruence tests (test_local_index.py,
reliability/test_filters.py, reliability/test_tenant_statistics.py compare its answers with qdrant-client's):
one process per path, the embedding-model check, persistence across restarts, a store only opened, and the
fusion it computes in Python."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from chatbot.errors import EmbeddingMismatch, StoreInUse, VectorStoreUnavailable
from chatbot.providers.base import SparseVector
from chatbot.settings import QdrantSettings
from chatbot.stores.base import MetadataFilter, QueryVectors
from chatbot.stores.edge.store import EdgeStore
from chatbot.stores.factory import vector_store
from chatbot.stores.fusion import dbsf, rrf
from tests.service.test_local_index import DIMS, TENANTS, corpus, queries, same

ROOT = str(Path(__file__).resolve().parents[2])
HOLD = """
import asyncio, sys, time
from chatbot.settings import QdrantSettings
from chatbot.stores.factory import vector_store

async def main():
    store = vector_store(QdrantSettings(path=sys.argv[1]))
    await store.open()
    print("open", flush=True)
    sys.stdin.readline()
    await store.aclose()

asyncio.run(main())
"""


async def opened(path: str, *, collection: str = "docs", model: str = "test/model") -> EdgeStore:
    store = vector_store(QdrantSettings(path=path, collection=collection))
    assert isinstance(store, EdgeStore)
    await store.open()
    await store.ensure_collection(model, DIMS, sparse=True)
    return store


class TestTheFolder:
    async def test_the_default_engine_for_a_path_is_edge(self) -> None:
        """A local path (or :memory:) opens Qdrant Edge; engine=qdrant-local keeps the old engine."""
        assert isinstance(vector_store(QdrantSettings(path=":memory:")), EdgeStore)
        assert not isinstance(vector_store(QdrantSettings(path=":memory:", engine="qdrant-local")), EdgeStore)
        assert not isinstance(vector_store(QdrantSettings(url="http://127.0.0.1:1")), EdgeStore)

    async def test_a_path_held_by_another_process_is_refused(self, tmp_path: Path) -> None:
        """While another process holds the path, open() raises StoreInUse; once it exits, the path opens."""
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD, str(tmp_path),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env={"PYTHONPATH": ROOT},
        )  # fmt: skip
        try:
            assert holder.stdout is not None
            assert (await holder.stdout.readline()).strip() == b"open"
            store = vector_store(QdrantSettings(path=str(tmp_path)))
            with pytest.raises(StoreInUse):
                await store.open()
            await store.aclose()
        finally:
            await asyncio.wait_for(holder.communicate(b"\n"), timeout=30)
        again = await opened(str(tmp_path))
        await again.aclose()

    async def test_a_second_store_on_the_same_path_in_this_process_is_refused(self, tmp_path: Path) -> None:
        """The lock is per open, not per process: two stores never write one shard."""
        first = await opened(str(tmp_path))
        second = vector_store(QdrantSettings(path=str(tmp_path)))
        try:
            with pytest.raises(StoreInUse):
                await second.open()
        finally:
            await second.aclose()
            await first.aclose()

    async def test_another_embedding_model_is_refused(self, tmp_path: Path) -> None:
        """A collection filled by one embedding model refuses a server that embeds with another."""
        store = await opened(str(tmp_path))
        await store.aclose()
        store = vector_store(QdrantSettings(path=str(tmp_path), collection="docs"))
        await store.open()
        try:
            with pytest.raises(EmbeddingMismatch, match="test/model"):
                await store.ensure_collection("other/model", DIMS, sparse=True)
        finally:
            await store.aclose()


class TestPersistence:
    async def test_a_restart_answers_as_before_with_its_payload_indexes(self, tmp_path: Path) -> None:
        """Chunks, versions, BM25 vectors and the filtered fields' indexes survive a restart."""
        records, dense, sparse = corpus(seed=21)
        where = MetadataFilter.model_validate({"lang": "en"})
        store = await opened(str(tmp_path))
        await store.upsert(records, dense, sparse)
        await store.search("a", queries(1, 1), mode="hybrid", limit=5, where=where)
        want = [await store.search("a", [q], mode="hybrid", limit=5) for q in queries(22, 5)]
        await store.aclose()
        again = await opened(str(tmp_path))
        try:
            assert "metadata.lang" in again.shard.info().payload_schema  # type: ignore[union-attr]
            assert [await again.search("a", [q], mode="hybrid", limit=5) for q in queries(22, 5)] == want
            assert await again.versions_of([records[0].point_id]) == {records[0].point_id: "v1"}
        finally:
            await again.aclose()

    async def test_a_store_only_opened_reads_and_deletes(self, tmp_path: Path) -> None:
        """Opened without ensure_collection (the CLI's delete), the store still finds and deletes documents."""
        records, dense, sparse = corpus(docs=3, chunks=4)
        store = await opened(str(tmp_path))
        await store.upsert(records, dense, sparse)
        await store.aclose()
        only = vector_store(QdrantSettings(path=str(tmp_path), collection="docs"))
        await only.open()
        try:
            assert await only.ping()
            assert await only.delete_document("a", "doc0") == 4
            assert await only.count("a") == 0
            assert await only.count("b") == 4
        finally:
            await only.aclose()

    async def test_a_collection_not_created_yet_reads_empty(self, tmp_path: Path) -> None:
        """Before ensure_collection, reads are empty, ping is False and writes say the store is unavailable."""
        store = vector_store(QdrantSettings(path=str(tmp_path), collection="none"))
        await store.open()
        try:
            assert not await store.ping()
            assert await store.count("a") == 0
            assert await store.list_documents("a") == []
            assert await store.chunks("a", "doc", 0, 3) == []
            assert await store.versions_of(["x"]) == {}
            assert await store.delete_document("a", "doc") == 0
            assert await store.search("a", queries(1, 1), mode="hybrid", limit=3) == []
            records, dense, sparse = corpus(docs=1, chunks=1)
            with pytest.raises(VectorStoreUnavailable):
                await store.upsert(records, dense, sparse)
        finally:
            await store.aclose()

    async def test_chunks_without_terms_are_stored_without_a_sparse_vector(self) -> None:
        """A chunk whose BM25 vector is empty is found by dense search and never by sparse search."""
        records, dense, sparse = corpus(docs=1, chunks=3)
        sparse = [SparseVector([], []), *sparse[1:]]
        store = await opened(":memory:")
        try:
            await store.upsert(records, dense, sparse)
            hits = await store.search("a", [QueryVectors(dense=dense[0])], mode="dense", limit=1)
            assert hits[0].chunk_index == 0
            every_term = SparseVector(list(range(60)), [1.0] * 60)
            found = await store.search("a", [QueryVectors(sparse=every_term)], mode="sparse", limit=10)
            assert sorted(h.chunk_index for h in found) == [1, 2]
        finally:
            await store.aclose()


class TestLegacyFolders:
    async def test_a_folder_of_qdrant_client_local_mode_is_copied_into_edge(self, tmp_path: Path) -> None:
        """A store folder written before Edge keeps its documents: Edge copies them on first use and then
        answers as qdrant-client did; the next start does not copy again."""
        records, dense, sparse = corpus(seed=31)
        old = vector_store(QdrantSettings(path=str(tmp_path), collection="docs", engine="qdrant-local"))
        await old.open()
        await old.ensure_collection("test/model", DIMS, sparse=True)
        await old.upsert(records, dense, sparse)
        want = [await old.search("b", [q], mode="hybrid", limit=5) for q in queries(32, 5)]
        await old.aclose()
        store = await opened(str(tmp_path))
        try:
            assert sum([await store.count(t) for t in TENANTS]) == len(records)
            for q, hits in zip(queries(32, 5), want, strict=True):
                same(await store.search("b", [q], mode="hybrid", limit=5), hits)
            await store.delete_document("b", "doc1")
        finally:
            await store.aclose()
        again = await opened(str(tmp_path))
        try:
            assert await again.count("b") == len([r for r in records if r.tenant == "b"]) - 6
        finally:
            await again.aclose()

    async def test_an_interrupted_first_start_is_started_again(self, tmp_path: Path) -> None:
        """A shard folder without the collection's record (a crash before it was written) is made anew."""
        store = await opened(str(tmp_path))
        await store.aclose()
        (tmp_path / "edge" / "docs" / "chatbot.json").unlink()
        again = await opened(str(tmp_path))
        try:
            assert await again.ping()
            assert await again.count("a") == 0
        finally:
            await again.aclose()


class TestFusion:
    def test_rrf_sums_reciprocal_ranks_and_keeps_first_appearance_on_ties(self) -> None:
        """1 / (rank + 2) summed per point; a tie keeps the order in which the points first appeared."""
        fused = rrf([[("a", 0.9), ("b", 0.8)], [("b", 5.0), ("a", 4.0), ("c", 1.0)]], limit=3)
        assert fused == [("a", 0.5 + 1 / 3), ("b", 1 / 3 + 0.5), ("c", 0.25)]
        assert rrf([[("a", 1.0)]], limit=0) == []

    def test_dbsf_scales_each_list_by_three_deviations(self) -> None:
        """Scores scaled to mean +- 3 sd, summed; one hit or equal scores count 0.5."""
        fused = dict(dbsf([[("a", 3.0), ("b", 1.0)], [("a", 7.0)], [("c", 2.0), ("d", 2.0)]], limit=4))
        sd = 2**0.5
        assert fused["a"] == pytest.approx((3.0 - (2.0 - 3 * sd)) / (6 * sd) + 0.5)
        assert fused["b"] == pytest.approx((1.0 - (2.0 - 3 * sd)) / (6 * sd))
        assert fused["c"] == fused["d"] == 0.5
        assert dbsf([[]], limit=3) == []
