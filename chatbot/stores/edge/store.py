"""EdgeStore: the VectorStore on Qdrant Edge (qdrant-edge-py), Qdrant's own engine running in this process.

The embedded engine for a local path (issue 15 target 4): HNSW, a sparse index, payload indexes (the tenant
one with is_tenant) and prefetch + fusion all run in Rust, so a filtered hybrid query over 100k chunks costs
about a millisecond and most of it outside the GIL; the store opens in well under a second and ingestion
writes thousands of points a second. Semantics are those of QdrantStore (the congruence tests compare them):
tenant-scoped everything, per-tenant BM25 IDF (statistics.py: here Edge's IDF modifier over a corpus filter
of the tenant's points that have BM25 terms), metadata filters as Qdrant evaluates them, RRF with k = 2.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as edge

from chatbot.errors import VectorStoreUnavailable
from chatbot.providers.base import SparseVector
from chatbot.settings import QdrantSettings
from chatbot.stores.base import (
    ChunkRecord,
    MetadataFilter,
    QueryVectors,
    ScoredChunk,
    SearchMode,
    StoredChunk,
    VectorStore,
)
from chatbot.stores.edge.conditions import (
    DENSE,
    METADATA,
    SPARSE,
    SYSTEM_INDEXES,
    idf_corpus,
    index_schemas,
    metadata_conditions,
    tenant_filter,
)
from chatbot.stores.edge.migrate import copy_legacy, legacy_collection
from chatbot.stores.edge.shard import Folder, Worker, check_model, config, read_meta, write_meta
from chatbot.stores.fusion import dbsf, rrf
from chatbot.stores.records import DocumentInfo, Fusion, one_per_index, search_probes

log = logging.getLogger(__name__)
T = TypeVar("T")


class EdgeStore:
    """The VectorStore protocol on one Edge shard per collection under `<path>/edge/`."""

    def __init__(
        self, settings: QdrantSettings, *, threads: int = 2, beside: EdgeStore | None = None
    ) -> None:
        self.settings = settings
        self.collection = settings.collection
        # a staged store (a reindex's copy) shares its folder, lock and threads with the store it is beside
        self.folder: Folder = beside.folder if beside is not None else Folder(settings.location)
        self.worker: Worker = beside.worker if beside is not None else Worker(threads)
        self._beside = beside is not None
        self._inflight: dict[int, int] = {}  # calls running per shard: a promoted-away shard closes when idle
        self.shard: edge.EdgeShard | None = None
        self.has_sparse = False
        self.dense_model = ""
        self.dimensions = 0
        self._indexed: set[str] = set()
        self._others: dict[str, edge.EdgeShard] = {}  # more shards in the folder (the answer cache)

    async def open(self) -> None:
        """Lock the folder and load the collection if it exists (a store only opened can read and delete)."""
        if not self._beside:  # a staged store's folder is locked by the store it is beside
            self.folder.acquire()
        path = self.folder.shard_path(self.collection)
        meta = read_meta(path)
        if meta is not None:
            self.shard = await self.worker.call(lambda: edge.EdgeShard.load(str(path)))
            self.has_sparse = bool(meta.get("sparse"))
            self.dimensions = int(meta.get("dimensions", 0))
            self._indexed = set(meta.get("indexed", ()))

    async def aclose(self) -> None:
        shard, self.shard = self.shard, None
        others, self._others = list(self._others.values()), {}
        try:
            for opened in [*others, shard] if shard is not None else others:
                await self.worker.call(opened.close)
        finally:
            if not self._beside:
                self.worker.close()
                self.folder.release()

    async def ensure_collection(self, dense_model: str, dimensions: int, *, sparse: bool) -> None:
        """Create the collection on first use; refuse one that was filled by another embedding model."""
        self.dense_model, self.dimensions = dense_model, dimensions
        path = self.folder.shard_path(self.collection)
        meta = read_meta(path)
        if meta is not None:
            check_model(self.collection, meta, dense_model)
            return
        if self.shard is None:
            self.shard = await self.worker.call(lambda: _create(path, dimensions, sparse=sparse))
        self.has_sparse = sparse
        if legacy_collection(self.settings):  # written by the engine before Edge: keep its documents
            await copy_legacy(self.settings, self._upsert_points, dense_model=dense_model, dimensions=dimensions,
                              sparse=sparse)  # fmt: skip
        self._save_meta()  # last: an interrupted copy is redone on the next start

    async def _upsert_points(self, points: list[edge.Point]) -> None:
        await self._update(edge.UpdateOperation.upsert_points(points))

    async def open_shard(
        self, name: str, shard_config: edge.EdgeConfig, *, indexes: Sequence[str] = ()
    ) -> edge.EdgeShard:
        """Another shard in this store's folder (loaded, or created with keyword `indexes` and the tenant
        index), open until the store closes: every app sharing this store shares it."""
        if name in self._others:
            return self._others[name]
        path = self.folder.shard_path(name)

        def load_or_create() -> edge.EdgeShard:
            if path.exists():
                return edge.EdgeShard.load(str(path))
            shard = edge.EdgeShard.create(str(path), shard_config)
            shard.update(edge.UpdateOperation.create_field_index("tenant", SYSTEM_INDEXES["tenant"]))
            for field in indexes:
                shard.update(edge.UpdateOperation.create_field_index(field, edge.PayloadSchemaType.Keyword))
            return shard

        opened = self._others[name] = await self.worker.call(load_or_create)
        return opened

    def _save_meta(self) -> None:
        write_meta(
            self.folder.shard_path(self.collection),
            {
                "dense_model": self.dense_model,
                "dimensions": self.dimensions,
                "sparse": self.has_sparse,
                "sparse_idf": "tenant",
                "indexed": sorted(self._indexed),
            },
        )

    async def _update(self, operation: edge.UpdateOperation) -> None:
        await self._run(lambda s: s.update(operation))

    async def _query(self, request: edge.QueryRequest) -> list[edge.ScoredPoint]:
        return await self._run(lambda s: s.query(request))

    async def _scroll(self, request: edge.ScrollRequest) -> tuple[list[edge.Record], Any]:
        return await self._run(lambda s: s.scroll(request))

    async def recorded_model(self) -> str | None:
        """The dense model the collection records it was built with; None before it exists."""
        meta = read_meta(self.folder.shard_path(self.collection))
        return None if meta is None else meta.get("dense_model")

    async def ping(self) -> bool:
        return self.shard is not None

    async def _run(self, fn: Callable[[edge.EdgeShard], T]) -> T:
        shard = self.shard
        if shard is None:
            raise VectorStoreUnavailable(provider="qdrant-edge")
        key = id(shard)
        self._inflight[key] = self._inflight.get(key, 0) + 1
        try:
            return await self.worker.call(lambda: fn(shard))
        except OSError as exc:
            log.warning("qdrant edge call failed: %r", exc)
            raise VectorStoreUnavailable(provider="qdrant-edge") from exc
        finally:
            self._inflight[key] -= 1
            if not self._inflight[key]:
                del self._inflight[key]

    # -- rebuilding: a staged shard promoted under this store's name (an alias in the folder) -------------

    async def stream_chunks(self) -> AsyncIterator[list[StoredChunk]]:
        """Every chunk of every tenant with its BM25 vector, a page at a time (reindex)."""
        if self.shard is None:
            return
        offset: Any = None
        vectors = [SPARSE] if self.has_sparse else False
        while True:
            request = edge.ScrollRequest(offset=offset, limit=256, with_payload=True, with_vector=vectors)
            points, offset = await self._scroll(request)
            yield [(ChunkRecord.from_payload(p.payload or {}), _stored_sparse(p)) for p in points]
            if offset is None:
                return

    def staging(self, label: str) -> EdgeStore:
        """A store on a new shard '<name>--<label>' in this store's folder (ensure_collection creates it)."""
        name = f"{self.collection}--{label}"
        return EdgeStore(self.settings.model_copy(update={"collection": name}), beside=self)

    async def promote(self, staged: VectorStore, on_switch: Callable[[], None]) -> None:
        """Serve the staged shard under this store's name from now on, then close and delete the old one once
        the calls already running on it have finished."""
        if not isinstance(staged, EdgeStore) or staged.folder is not self.folder or staged.shard is None:
            raise TypeError("promote() takes a store made by staging()")
        old_path = self.folder.shard_path(self.collection)
        self.folder.point_alias(self.collection, staged.folder.shard_path(staged.collection).name)
        old, self.shard, staged.shard = self.shard, staged.shard, None
        self.has_sparse, self.dense_model, self.dimensions = (
            staged.has_sparse,
            staged.dense_model,
            staged.dimensions,
        )
        self._indexed = set(staged._indexed)
        on_switch()
        if old is not None:
            for _ in range(1000):  # searches started before the switch end within their deadline
                if not self._inflight.get(id(old)):
                    break
                await asyncio.sleep(0.01)
            await self.worker.call(old.close)
        await asyncio.to_thread(shutil.rmtree, old_path, True)

    async def discard(self, staged: VectorStore) -> None:
        """Drop a staged shard (a cancelled or failed rebuild); this store's collection is untouched."""
        if not isinstance(staged, EdgeStore) or staged.folder is not self.folder or staged is self:
            raise TypeError("discard() takes a store made by staging()")
        path = self.folder.shard_path(staged.collection)
        await staged.aclose()
        await asyncio.to_thread(shutil.rmtree, path, True)

    # -- search -------------------------------------------------------------------------------------------

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
        """A probe alone in one call; several in concurrent calls, fused here (fusion.py) by `fusion`."""
        extra = metadata_conditions(where) if where is not None else None
        flt = tenant_filter(tenant, extra=extra)
        probes = search_probes(queries, mode, has_sparse=self.has_sparse)
        if not probes or self.shard is None:
            return []
        if where is not None:
            await self._index(where)
        if len(probes) == 1:
            query, params = _probe(probes[0], tenant)
            threshold = score_threshold if probes[0].dense is not None else None
            request = edge.QueryRequest(limit=limit, query=query, filter=flt, score_threshold=threshold,
                                        params=params, with_payload=True)  # fmt: skip
            points = await self._run(lambda s: s.query(request))
            return [ScoredChunk.from_payload(p.payload or {}, p.score) for p in points]
        requests = []
        for p in probes:
            query, params = _probe(p, tenant)
            threshold = score_threshold if p.dense is not None else None
            requests.append(edge.QueryRequest(limit=prefetch_limit, query=query, filter=flt,
                                              score_threshold=threshold, params=params))  # fmt: skip
        # the probes run side by side on the worker threads (Edge searches outside the GIL): as one batch call
        # they ran one after the other, p50 6.9 / p90 17-42 ms against 6.5 / 8.5 at 100k on the loaded box
        lists = await asyncio.gather(*(self._query(r) for r in requests))
        fuse = dbsf if fusion == "dbsf" else rrf
        fused = fuse([[(str(p.id), p.score) for p in hits] for hits in lists], limit)
        found = await self._run(lambda s: s.retrieve([pid for pid, _ in fused], True, False))
        payloads = {str(p.id): p.payload or {} for p in found}
        return [ScoredChunk.from_payload(payloads.get(pid, {}), score) for pid, score in fused]

    async def _index(self, where: MetadataFilter) -> None:
        """The payload index of each filtered field, created on its first use (kept across restarts)."""
        wanted = {f: s for f, s in index_schemas(where).items() if f not in self._indexed}
        if not wanted:
            return
        self._indexed.update(wanted)
        for field, schema in wanted.items():
            await self._update(edge.UpdateOperation.create_field_index(field, schema))
        self._save_meta()

    async def chunks(self, tenant: str, doc_id: str, first: int, last: int) -> list[ScoredChunk]:
        """The chunks of one document with first <= chunk_index <= last, in order."""
        if last < first or self.shard is None:
            return []
        span = edge.FieldCondition(key="chunk_index", range=edge.RangeFloat(gte=first, lte=last))
        flt = tenant_filter(tenant, doc_id=doc_id, extra=[span])
        # room for two versions of each chunk while a document is being replaced; one per index is kept
        request = edge.ScrollRequest(limit=2 * (last - first + 1), filter=flt, with_payload=True)
        points, _ = await self._scroll(request)
        return one_per_index(ScoredChunk.from_payload(p.payload or {}, 0.0) for p in points)

    async def versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored `version` of each id that exists."""
        if not ids or self.shard is None:
            return {}
        selector = edge.PayloadSelector.Include(["version"])
        found = await self._run(lambda s: s.retrieve(list(ids), selector, False))
        return {str(p.id): str((p.payload or {}).get("version", "")) for p in found}

    async def list_documents(self, tenant: str) -> list[DocumentInfo]:
        """Every document of a tenant with its chunk count (scrolls the tenant's payloads)."""
        docs: dict[str, DocumentInfo] = {}
        if self.shard is None:
            return []
        flt = tenant_filter(tenant)
        fields = edge.PayloadSelector.Include(["doc_id", "source", "title", "version"])
        offset: Any = None
        while True:
            request = edge.ScrollRequest(offset=offset, limit=1024, filter=flt, with_payload=fields)
            points, offset = await self._scroll(request)
            for p in points:
                pl = p.payload or {}
                key = str(pl.get("doc_id"))
                seen = docs.get(key)
                docs[key] = DocumentInfo(
                    key,
                    str(pl.get("source", "")) if seen is None else seen.source,
                    str(pl.get("title", "")) if seen is None else seen.title,
                    1 if seen is None else seen.chunks + 1,
                    str(pl.get("version", "")) if seen is None else seen.version,
                )
            if offset is None:
                return sorted(docs.values(), key=lambda d: d.source)

    async def count(self, tenant: str) -> int:
        flt = tenant_filter(tenant)
        if self.shard is None:
            return 0
        return await self._run(lambda s: s.count(edge.CountRequest(exact=True, filter=flt)))

    # -- writes -------------------------------------------------------------------------------------------

    async def upsert(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
    ) -> None:
        with_sparse = sparse if sparse is not None and self.has_sparse else None
        size = self.settings.upsert_batch
        for start in range(0, len(records), size):
            part = records[start : start + size]
            await self._write(part, dense, with_sparse, start)

    async def _write(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
        offset: int,
    ) -> None:
        # the points are built on the worker thread, not the serving loop
        await self._run(lambda s: s.update(_upsert(records, dense, sparse, offset)))

    async def set_version(
        self, ids: Sequence[str], version: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        if ids:
            payload = {"version": version, METADATA: dict(metadata or {})}
            await self._update(edge.UpdateOperation.set_payload(list(ids), payload))

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Remove chunks of older versions of a document (by filter: the doc_id index finds them)."""
        stale = edge.Filter(
            must_not=[edge.FieldCondition(key="version", match=edge.MatchValue(keep_version))]
        )
        flt = tenant_filter(tenant, doc_id=doc_id, extra=[stale])
        await self._update(edge.UpdateOperation.delete_points_by_filter(flt))

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        flt = tenant_filter(tenant, doc_id=doc_id)
        if self.shard is None:
            return 0
        count = await self._run(lambda s: s.count(edge.CountRequest(exact=True, filter=flt)))
        if count:
            await self._update(edge.UpdateOperation.delete_points_by_filter(flt))
        return count


def _stored_sparse(point: edge.Record) -> SparseVector | None:
    """A point's BM25 vector as written (a chunk without terms has none)."""
    raw = point.vector.get(SPARSE) if isinstance(point.vector, dict) else None
    return SparseVector(list(raw.indices), list(raw.values)) if isinstance(raw, edge.SparseVector) else None


def _create(path: Path, dimensions: int, *, sparse: bool) -> edge.EdgeShard:
    """A new shard with the system payload indexes. A folder without the collection's record is what an
    interrupted first start left (the record is written last): it is started again."""
    if path.exists():
        shutil.rmtree(path)
    created = edge.EdgeShard.create(str(path), config(dimensions, sparse=sparse))
    for field, schema in SYSTEM_INDEXES.items():
        created.update(edge.UpdateOperation.create_field_index(field, schema))
    return created


def _probe(probe: QueryVectors, tenant: str) -> tuple[edge.Query, edge.SearchParams | None]:
    """One probe as an Edge query: dense as it is, sparse weighted by the tenant's IDF."""
    if probe.dense is not None:
        return edge.Query.Nearest(list(probe.dense), using=DENSE), None
    assert probe.sparse is not None  # noqa: S101 - a probe has exactly one vector (search_probes)
    vector = edge.SparseVector(list(probe.sparse.indices), list(probe.sparse.values))
    return edge.Query.Nearest(vector, using=SPARSE), idf_corpus(tenant)


def _upsert(
    records: Sequence[ChunkRecord],
    dense: Sequence[Sequence[float]],
    sparse: Sequence[SparseVector] | None,
    offset: int,
) -> edge.UpdateOperation:
    """Points for one batch (built on the worker thread). A chunk without BM25 terms has no sparse vector, so
    it is not in its tenant's IDF corpus (the same N as the mirror and the server path)."""
    points = []
    for i, rec in enumerate(records, start=offset):
        vector: dict[str, Any] = {DENSE: list(dense[i])}
        if sparse is not None and sparse[i].indices:
            vector[SPARSE] = edge.SparseVector(list(sparse[i].indices), list(sparse[i].values))
        points.append(edge.Point(rec.point_id, vector, rec.payload()))
    return edge.UpdateOperation.upsert_points(points)
