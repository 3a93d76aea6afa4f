"""MirroredStore: a QdrantStore in local mode, with searches answered by an exact in-memory mirror.

A wrapper, not a mode of the store: Qdrant stays the store of record and receives every write first; the
mirror (local_index.LocalIndex) is loaded once at start-up and then updated after each write, so it always
holds what Qdrant holds. Local mode is single-process (Qdrant holds a file lock), so no other writer exists.

Searches that the mirror answers exactly as Qdrant does (one probe, or several fused by RRF or DBSF) never
reach qdrant-client's Python loops. The mirror also finds a document's points by id,
so re-ingesting or deleting a document deletes by id instead of by a payload filter, which local mode
evaluates over every point of the collection (issue 15: ingestion was quadratic).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from chatbot.providers.base import SparseVector
from chatbot.stores.base import (
    ChunkRecord,
    MetadataFilter,
    QueryVectors,
    ScoredChunk,
    SearchMode,
    StoredChunk,
    VectorStore,
)
from chatbot.stores.ids import check_tenant
from chatbot.stores.qdrant.conditions import METADATA
from chatbot.stores.qdrant.local_index import Allow, LocalIndex
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.stores.records import DocumentInfo, Fusion, one_per_index, search_probes


class MirroredStore:
    """The VectorStore protocol over `inner`, answering searches from memory."""

    def __init__(self, inner: QdrantStore) -> None:
        self.inner = inner
        self.index = LocalIndex()
        inner.statistics = self  # a search that reaches Qdrant itself takes the tenant's IDF from memory

    @property
    def qdrant(self) -> QdrantStore:
        return self.inner

    @property
    def has_sparse(self) -> bool:
        return self.inner.has_sparse

    async def open(self) -> None:
        """Open Qdrant and mirror the collection if it exists (once: every later write passes through here).
        Loading here, not in ensure_collection, keeps a store that is only opened (the CLI's delete) exact."""
        await self.inner.open()
        self.index = await _load(self.inner)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def ping(self) -> bool:
        return await self.inner.ping()

    # -- rebuilding (reindex): the mirror of the staged collection is loaded before the switch ------------

    def stream_chunks(self) -> AsyncIterator[list[StoredChunk]]:
        return self.inner.stream_chunks()

    def staging(self, label: str) -> QdrantStore:
        return self.inner.staging(label)

    async def promote(self, staged: VectorStore, on_switch: Callable[[], None]) -> None:
        """Mirror the staged collection first, then switch Qdrant's alias and the mirror at the same moment."""
        if not isinstance(staged, QdrantStore):
            raise TypeError("promote() takes a store made by staging()")
        index = await _load(staged)

        def switch() -> None:
            self.index = index
            on_switch()

        await self.inner.promote(staged, switch)

    async def discard(self, staged: VectorStore) -> None:
        await self.inner.discard(staged)

    async def recorded_model(self) -> str | None:
        return await self.inner.recorded_model()

    async def ensure_collection(self, dense_model: str, dimensions: int, *, sparse: bool) -> None:
        await self.inner.ensure_collection(dense_model, dimensions, sparse=sparse)

    # -- reads ------------------------------------------------------------------------------------------

    async def search(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        *,
        mode: SearchMode,
        limit: int,
        prefetch_limit: int = 40,
        score_threshold: float | None = None,
        fusion: Fusion = "rrf",
        where: MetadataFilter | None = None,
    ) -> list[ScoredChunk]:
        """The same search as Qdrant's (same ids, order and scores), RRF or DBSF over several probes; a metadata
        filter is the same predicate as Qdrant's (MetadataFilter.matches)."""
        probes = search_probes(queries, mode, has_sparse=self.has_sparse)
        check_tenant(tenant)  # the same guard as every Qdrant query
        if not probes:
            return []
        depth = limit if len(probes) == 1 else prefetch_limit
        allow = None if where is None else _allow(where)
        lists = [self.index.search(tenant, p.dense, p.sparse, depth, score_threshold, allow) for p in probes]
        fuse = LocalIndex.dbsf if fusion == "dbsf" else LocalIndex.rrf
        hits = lists[0] if len(lists) == 1 else fuse(lists, limit)
        return [ScoredChunk.from_payload(hit.payload, hit.score) for hit in hits]

    async def idfs(self, tenant: str, terms: Sequence[int]) -> list[float]:
        """statistics.TermStatistics from the mirror: exact, since every write passes through here."""
        return self.index.idfs(tenant, terms)

    async def chunks(self, tenant: str, doc_id: str, first: int, last: int) -> list[ScoredChunk]:
        """A document's chunks by index, from the mirror (no payload scan)."""
        points = self.index.document_points(check_tenant(tenant), doc_id)
        return one_per_index(
            ScoredChunk.from_payload(payload, 0.0)
            for payload in points.values()
            if first <= int(payload.get("chunk_index", -1)) <= last
        )

    async def versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored `version` of each id that exists."""
        found = {}
        for pid in ids:
            payload = self.index.payload_of(pid)
            if payload is not None:
                found[pid] = str(payload.get("version", ""))
        return found

    async def list_documents(self, tenant: str) -> list[DocumentInfo]:
        return await self.inner.list_documents(tenant)

    async def count(self, tenant: str) -> int:
        check_tenant(tenant)
        return self.index.count(tenant)

    # -- writes: Qdrant first, then the mirror ----------------------------------------------------------

    async def upsert(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
    ) -> None:
        await self.inner.upsert(records, dense, sparse)
        with_sparse = sparse if sparse is not None and self.has_sparse else None
        for i, rec in enumerate(records):
            terms = with_sparse[i] if with_sparse is not None else None
            self.index.upsert(rec.point_id, rec.tenant, dense[i], terms, rec.payload())

    async def set_version(
        self, ids: Sequence[str], version: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        await self.inner.set_version(ids, version, metadata=metadata)
        self.index.set_payload(ids, {"version": version, METADATA: dict(metadata or {})})

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Remove chunks of older versions of a document: by id, found in the mirror."""
        points = self.index.document_points(check_tenant(tenant), doc_id)
        stale = [pid for pid, payload in points.items() if payload.get("version") != keep_version]
        await self._delete(stale)

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        points = list(self.index.document_points(check_tenant(tenant), doc_id))
        await self._delete(points)
        return len(points)

    async def _delete(self, ids: list[str]) -> None:
        if ids:
            await self.inner.delete_points(ids)
            self.index.delete(ids)


def _allow(where: MetadataFilter) -> Allow:
    """A filter as the mirror's predicate on a point's payload, named by its canonical JSON."""
    holds = where.predicate()
    return Allow(where.model_dump_json(), lambda payload: holds(payload.get(METADATA)))


async def _load(store: QdrantStore) -> LocalIndex:
    """A mirror of every point of the store's collection (empty before it exists)."""
    index = LocalIndex()
    async for page in store.stream_points():
        for p in page:
            index.upsert(p.point_id, p.tenant, p.dense, p.sparse, p.payload)
    return index
