"""QdrantStore: the VectorStore on an AsyncQdrantClient (a Qdrant server, or local mode on a loop thread).

It owns the client and answers searches, passage reads and writes. Next to it: collection.py opens the
collection, conditions.py builds the tenant-scoped filters every search, scroll and delete by filter uses,
indexes.py keeps the payload indexes, points.py lays chunks out as points, statistics.py weighs sparse
queries with the tenant's IDF. Only this package touches qdrant_client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from chatbot.errors import ChatbotError, StoreInUse, VectorStoreUnavailable
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
from chatbot.stores.qdrant.collection import open_collection, recorded_dense_model, switch_alias
from chatbot.stores.qdrant.conditions import METADATA, metadata_filter, tenant_filter
from chatbot.stores.qdrant.indexes import PayloadIndexes
from chatbot.stores.qdrant.loop_thread import LoopThread
from chatbot.stores.qdrant.points import (
    DENSE,
    SPARSE,
    WITHOUT_TERMS,
    StoredPoint,
    build_points,
    stored_point,
)
from chatbot.stores.qdrant.statistics import CountedStatistics, TermStatistics, weigh
from chatbot.stores.records import DocumentInfo, Fusion, one_per_index, search_probes

log = logging.getLogger(__name__)
T = TypeVar("T")
Operation = Callable[[AsyncQdrantClient], Coroutine[Any, Any, T]]  # one client call, run by QdrantStore.run


class QdrantStore:
    """Owns the AsyncQdrantClient. Local mode runs on a private loop thread; a server is used directly."""

    def __init__(self, settings: QdrantSettings) -> None:
        self.settings = settings
        self.collection = settings.collection
        self._loop_thread: LoopThread | None = None
        self._client: AsyncQdrantClient | None = None
        self._shares_client = False  # a staged store (staging()) uses its parent's client and never closes it
        self.has_sparse = False
        self.dense_model = ""
        self.dimensions = 0
        # per-tenant IDF for sparse queries (see statistics.py); MirroredStore answers it from memory
        self.statistics: TermStatistics = CountedStatistics(self.run, self.collection, tenant_filter)
        self.indexes = PayloadIndexes(self.run, self.collection, is_local=settings.is_local)

    @property
    def qdrant(self) -> QdrantStore:
        """The Qdrant store under any wrapper (see MirroredStore.qdrant): itself."""
        return self

    async def open(self) -> None:
        if self.settings.is_local:
            self._loop_thread = LoopThread("qdrant-local")
            try:
                self._client = await self._loop_thread.run(self._make_client())
            except BaseException:
                self._loop_thread.stop()  # or the process cannot exit
                self._loop_thread = None
                raise
        else:
            self._client = await self._make_client()

    async def _make_client(self) -> AsyncQdrantClient:
        s = self.settings
        if s.url:
            return AsyncQdrantClient(
                url=s.url, api_key=s.api_key.get_secret_value() if s.api_key else None, timeout=int(s.timeout)
            )
        location = s.location
        if location == ":memory:":
            return AsyncQdrantClient(location=":memory:")
        try:
            return AsyncQdrantClient(path=location)
        except RuntimeError as exc:  # qdrant-client's lock on the folder: another process holds it
            if "already accessed" not in str(exc):
                raise
            raise StoreInUse(f"The embedded store {location} is in use by another process.") from None

    async def aclose(self) -> None:
        if self._shares_client:
            self._client = self._loop_thread = None
            return
        if self._client is not None:
            client, self._client = self._client, None
            await self._on_client_loop(client.close())
        if self._loop_thread is not None:
            self._loop_thread.stop()
            self._loop_thread = None

    async def run(self, operation: Operation[T]) -> T:
        """Run one client operation where the client lives (local mode: its loop thread, so its Python vector
        math never blocks the serving loop), translating transport failures into VectorStoreUnavailable.
        The answer cache, in this package, uses its own collection through this."""
        if self._client is None:
            raise RuntimeError("QdrantStore.open() was not awaited")
        client = self._client
        try:
            # the operation is called where it runs: in local mode, points are built on Qdrant's thread
            return await self._on_client_loop(_call(operation, client))
        except ChatbotError:
            raise
        except (ResponseHandlingException, UnexpectedResponse, ConnectionError, TimeoutError, OSError) as exc:
            log.warning("qdrant call failed: %r", exc)
            raise VectorStoreUnavailable(provider="qdrant") from exc

    async def _on_client_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop_thread is not None:
            return await self._loop_thread.run(coro)
        return await coro

    # -- collection lifecycle ---------------------------------------------------------------------------

    async def ensure_collection(self, dense_model: str, dimensions: int, *, sparse: bool) -> None:
        """Create the collection on first use; refuse one that was filled by another embedding model."""
        self.dense_model = dense_model
        self.dimensions = dimensions
        self.has_sparse, existing = await open_collection(
            self.run, self.settings, dense_model, dimensions, sparse=sparse
        )
        await self.indexes.ensure_system(sparse=self.has_sparse, existing=existing)

    async def recorded_model(self) -> str | None:
        """The dense model the collection records it was built with; None before it exists."""
        return await recorded_dense_model(self.run, self.collection)

    async def ping(self) -> bool:
        """True when the store answers and the collection exists."""
        try:
            return await asyncio.wait_for(self.run(lambda c: c.collection_exists(self.collection)), timeout=2)
        except (ChatbotError, TimeoutError):
            return False

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
        """Search in one call: one prefetch per probe, fused server-side when there are several."""
        flt = tenant_filter(tenant, extra=metadata_filter(where) if where is not None else None)
        if where is not None:
            await self.indexes.ensure_filtered(where)
        probes = search_probes(queries, mode, has_sparse=self.has_sparse)
        if not probes:
            return []
        probes = await self._weighted(tenant, probes)
        prefetch = [_prefetch(p, prefetch_limit, score_threshold) for p in probes]
        name = self.collection
        if len(prefetch) == 1:
            only = prefetch[0]
            response = await self.run(
                lambda c: c.query_points(
                    name,
                    query=only.query,
                    using=only.using,
                    limit=limit,
                    score_threshold=only.score_threshold,
                    query_filter=flt,
                    with_payload=WITHOUT_TERMS,
                )
            )
        else:
            for p in prefetch:
                p.filter = flt
            fused = models.FusionQuery(fusion=models.Fusion.DBSF if fusion == "dbsf" else models.Fusion.RRF)
            response = await self.run(
                lambda c: c.query_points(
                    name,
                    prefetch=prefetch,
                    query=fused,
                    limit=limit,
                    query_filter=flt,
                    with_payload=WITHOUT_TERMS,
                )
            )
        return [ScoredChunk.from_payload(point.payload or {}, point.score) for point in response.points]

    async def _weighted(self, tenant: str, probes: list[QueryVectors]) -> list[QueryVectors]:
        """Sparse probes with the tenant's IDF applied to their terms (each term looked up once); dense
        probes as they are."""
        terms = sorted({t for p in probes if p.sparse is not None for t in p.sparse.indices})
        if not terms:
            return probes
        idfs = dict(zip(terms, await self.statistics.idfs(tenant, terms), strict=True))
        return [
            QueryVectors(sparse=weigh(p.sparse, [idfs[t] for t in p.sparse.indices])) if p.sparse else p
            for p in probes
        ]

    async def chunks(self, tenant: str, doc_id: str, first: int, last: int) -> list[ScoredChunk]:
        """The chunks of one document with first <= chunk_index <= last, in order."""
        if last < first:
            return []
        flt = tenant_filter(
            tenant,
            doc_id=doc_id,
            extra=models.Filter(
                must=[models.FieldCondition(key="chunk_index", range=models.Range(gte=first, lte=last))]
            ),
        )
        # room for two versions of each chunk while a document is being replaced; one per index is kept
        limit = 2 * (last - first + 1)
        points, _ = await self.run(
            _scroll(self.collection, None, scroll_filter=flt, limit=limit, with_payload=True)
        )
        return one_per_index(ScoredChunk.from_payload(p.payload or {}, 0.0) for p in points)

    async def stream_points(self, page: int = 1024) -> AsyncIterator[list[StoredPoint]]:
        """Every point with its vectors and payload, a page at a time (for a mirror's start-up load); nothing
        when the collection does not exist yet."""
        name = self.collection
        if not await self.run(lambda c: c.collection_exists(name)):
            return
        offset: Any = None
        while True:
            points, offset = await self.run(
                _scroll(name, offset, limit=page, with_payload=WITHOUT_TERMS, with_vectors=True)
            )
            yield [stored for p in points if (stored := stored_point(p)) is not None]
            if offset is None:
                return

    async def stream_chunks(self) -> AsyncIterator[list[StoredChunk]]:
        """Every chunk of every tenant with its BM25 vector, a page at a time (reindex)."""
        async for page in self.stream_points(page=256):
            yield [(ChunkRecord.from_payload(p.payload), p.sparse) for p in page]

    # -- rebuilding: a staged collection promoted under this store's name (an alias) ----------------------

    def staging(self, label: str) -> QdrantStore:
        """A store on collection '<name>--<label>' on this store's client (opened: ensure_collection next)."""
        staged = QdrantStore(self.settings.model_copy(update={"collection": f"{self.collection}--{label}"}))
        staged._client, staged._loop_thread, staged._shares_client = self._client, self._loop_thread, True
        return staged

    async def promote(self, staged: VectorStore, on_switch: Callable[[], None]) -> None:
        """Point this store's name (an alias) at the staged collection, then drop the one served until now."""
        if not isinstance(staged, QdrantStore):
            raise TypeError("promote() takes a store made by staging()")
        old = await switch_alias(self.run, self.collection, staged.collection)
        on_switch()
        self.has_sparse, self.dense_model, self.dimensions = (
            staged.has_sparse,
            staged.dense_model,
            staged.dimensions,
        )
        self.indexes = staged.indexes  # bound to the staged collection's own name, which the alias now names
        if isinstance(self.statistics, CountedStatistics):  # a mirror answers them itself
            self.statistics = CountedStatistics(self.run, self.collection, tenant_filter)
        if old is not None:
            await self.run(lambda c: c.delete_collection(old))
        await staged.aclose()

    async def discard(self, staged: VectorStore) -> None:
        """Drop a staged collection (a cancelled or failed rebuild); this store's collection is untouched."""
        if not isinstance(staged, QdrantStore) or staged.collection == self.collection:
            raise TypeError("discard() takes a store made by staging()")
        name = staged.collection
        await self.run(lambda c: c.delete_collection(name))
        await staged.aclose()

    # -- writes -------------------------------------------------------------------------------------------

    async def versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored `version` of each id that exists."""
        if not ids:
            return {}
        found = await self.run(lambda c: c.retrieve(self.collection, ids=list(ids), with_payload=["version"]))
        return {str(p.id): str((p.payload or {}).get("version", "")) for p in found}

    async def set_version(
        self, ids: Sequence[str], version: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        if ids:
            payload = {"version": version, METADATA: dict(metadata or {})}
            await self.run(
                lambda c: c.set_payload(self.collection, payload=payload, points=list(ids), wait=True)
            )

    async def upsert(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
    ) -> None:
        with_sparse = sparse if sparse is not None and self.has_sparse else None
        size = self.settings.upsert_batch
        for start in range(0, len(records), size):
            await self.run(_upsert(self.collection, records[start : start + size], dense, with_sparse, start))

    async def delete_points(self, ids: Sequence[str]) -> None:
        """Delete points by id (ids are uuid5 of their tenant: see stores.ids.point_id). Unlike a delete by
        filter, local mode does this without scanning every point's payload."""
        if ids:
            selector = models.PointIdsList(points=list(ids))
            await self.run(lambda c: c.delete(self.collection, points_selector=selector, wait=True))

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Remove chunks of older versions of a document (after the new version is fully written)."""
        flt = tenant_filter(
            tenant,
            doc_id=doc_id,
            extra=models.Filter(
                must_not=[models.FieldCondition(key="version", match=models.MatchValue(value=keep_version))]
            ),
        )
        selector = models.FilterSelector(filter=flt)
        await self.run(lambda c: c.delete(self.collection, points_selector=selector, wait=True))

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        flt = tenant_filter(tenant, doc_id=doc_id)
        count = await self.run(lambda c: c.count(self.collection, count_filter=flt, exact=True))
        if count.count:
            selector = models.FilterSelector(filter=flt)
            await self.run(lambda c: c.delete(self.collection, points_selector=selector, wait=True))
        return count.count

    async def list_documents(self, tenant: str) -> list[DocumentInfo]:
        """Every document of a tenant with its chunk count (scrolls payloads; fine for thousands of chunks)."""
        docs: dict[str, dict[str, Any]] = {}
        offset: Any = None
        flt = tenant_filter(tenant)
        fields = ["doc_id", "source", "title", "version"]
        while True:
            points, offset = await self.run(
                _scroll(self.collection, offset, scroll_filter=flt, limit=512, with_payload=fields)
            )
            for p in points:
                pl = p.payload or {}
                entry = docs.setdefault(
                    str(pl.get("doc_id")),
                    {
                        "source": pl.get("source", ""),
                        "title": pl.get("title", ""),
                        "version": pl.get("version", ""),
                    },
                )
                entry["n"] = entry.get("n", 0) + 1
            if offset is None:
                break
        return sorted(
            (
                DocumentInfo(
                    doc_id=k, source=v["source"], title=v["title"], chunks=v["n"], version=v["version"]
                )
                for k, v in docs.items()
            ),
            key=lambda d: d.source,
        )

    async def count(self, tenant: str) -> int:
        flt = tenant_filter(tenant)
        return (await self.run(lambda c: c.count(self.collection, count_filter=flt, exact=True))).count


async def _call(
    operation: Callable[[AsyncQdrantClient], Coroutine[Any, Any, T]], client: AsyncQdrantClient
) -> T:
    return await operation(client)


def _prefetch(probe: QueryVectors, limit: int, score_threshold: float | None) -> models.Prefetch:
    if probe.dense is not None:
        return models.Prefetch(
            query=list(probe.dense), using=DENSE, limit=limit, score_threshold=score_threshold
        )
    assert probe.sparse is not None  # noqa: S101 - a probe has exactly one vector (search_probes)
    query = models.SparseVector(indices=probe.sparse.indices, values=probe.sparse.values)
    return models.Prefetch(query=query, using=SPARSE, limit=limit)


def _scroll(collection: str, offset: Any, **kwargs: Any) -> Operation[tuple[list[models.Record], Any]]:
    return lambda c: c.scroll(collection, offset=offset, **kwargs)


def _upsert(
    collection: str,
    records: Sequence[ChunkRecord],
    dense: Sequence[Sequence[float]],
    sparse: Sequence[SparseVector] | None,
    offset: int,
) -> Operation[models.UpdateResult]:
    # the points are built when the operation runs: in local mode on Qdrant's thread, not the serving loop
    return lambda c: c.upsert(collection, points=build_points(records, dense, sparse, offset), wait=True)
