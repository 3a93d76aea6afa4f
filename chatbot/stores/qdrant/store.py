"""QdrantStore: the VectorStore on an AsyncQdrantClient (a Qdrant server, or local mode on a loop thread).

The only module, with the answer cache and the mirror next to it, that touches qdrant_client. Every search,
scroll and delete by filter goes through `tenant_filter`, which refuses to build a filter without a tenant:
a query can never silently search every tenant's documents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from chatbot.errors import ChatbotError, EmbeddingMismatch, StoreInUse, VectorStoreUnavailable
from chatbot.providers.base import SparseVector
from chatbot.settings import QdrantSettings
from chatbot.stores.base import (
    ChunkRecord,
    DocumentInfo,
    Fusion,
    MetadataFilter,
    QueryVectors,
    ScoredChunk,
    SearchMode,
    check_tenant,
    search_probes,
)
from chatbot.stores.qdrant.loop_thread import LoopThread
from chatbot.stores.qdrant.statistics import (
    TERMS_FIELD,
    CountedStatistics,
    TermStatistics,
    migrate_to_tenant_idf,
    uses_collection_idf,
    weigh,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Operation = Callable[[AsyncQdrantClient], Coroutine[Any, Any, T]]  # one client call, run by QdrantStore.run

DENSE = "dense"
SPARSE = "bm25"
WITHOUT_TERMS = models.PayloadSelectorExclude(exclude=[TERMS_FIELD])  # hits and mirrors never need them


def tenant_filter(
    tenant: str, *, doc_id: str | None = None, extra: models.Filter | None = None
) -> models.Filter:
    """The one way to scope a query. Without a tenant it raises instead of matching everything."""
    must: list[models.Condition] = [
        models.FieldCondition(key="tenant", match=models.MatchValue(value=check_tenant(tenant)))
    ]
    if doc_id is not None:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)))
    if extra is not None:
        must.append(extra)
    return models.Filter(must=must)


METADATA = "metadata"  # the payload key holding a document's metadata (stores/filters.py)


def metadata_filter(where: MetadataFilter) -> models.Filter:
    """A metadata filter as Qdrant conditions on `metadata.<key>` (never on a system field: a key named
    `tenant` reads metadata.tenant, so it can narrow a query but never widen its tenant scope)."""
    must: list[models.Condition] = []
    for key, cond in where.conditions():
        field = f"{METADATA}.{key}"
        if cond.any is None:
            must.append(
                models.FieldCondition(
                    key=field, range=models.Range(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte)
                )
            )
        elif len(cond.any) == 1 or any(isinstance(v, bool) for v in cond.any):
            # MatchAny takes strings or integers only; booleans (and a single value) match one by one
            must.append(
                models.Filter(
                    should=[
                        models.FieldCondition(key=field, match=models.MatchValue(value=v)) for v in cond.any
                    ]
                )
            )
        else:
            must.append(models.FieldCondition(key=field, match=models.MatchAny(any=list(cond.any))))
    return models.Filter(must=must)


def index_schemas(where: MetadataFilter) -> dict[str, models.PayloadSchemaType]:
    """The payload index each filtered field needs on a server: float for a range, else by the value type."""
    out: dict[str, models.PayloadSchemaType] = {}
    for key, cond in where.conditions():
        if cond.any is None:
            schema = models.PayloadSchemaType.FLOAT
        elif all(isinstance(v, bool) for v in cond.any):
            schema = models.PayloadSchemaType.BOOL
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in cond.any):
            schema = models.PayloadSchemaType.INTEGER
        else:
            schema = models.PayloadSchemaType.KEYWORD
        out[f"{METADATA}.{key}"] = schema
    return out


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """One point as read back for a mirror: its id, tenant, vectors and payload."""

    point_id: str
    tenant: str
    dense: Sequence[float]
    sparse: SparseVector | None
    payload: dict[str, Any]


class QdrantStore:
    """Owns the AsyncQdrantClient. Local mode runs on a private loop thread; a server is used directly."""

    def __init__(self, settings: QdrantSettings) -> None:
        self.settings = settings
        self.collection = settings.collection
        self._loop_thread: LoopThread | None = None
        self._client: AsyncQdrantClient | None = None
        self.has_sparse = False
        self.dense_model = ""
        self.dimensions = 0
        # per-tenant IDF for sparse queries (see statistics.py); MirroredStore answers it from memory
        self.statistics: TermStatistics = CountedStatistics(self.run, self.collection, tenant_filter)
        self._indexed: set[str] = (
            set()
        )  # payload fields indexed for filters on a server (created on first use)

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
        name = self.collection
        if await self.run(lambda c: c.collection_exists(name)):
            info = await self.run(lambda c: c.get_collection(name))
            meta = info.config.metadata or {}
            recorded = meta.get("dense_model")
            if recorded is not None and recorded != dense_model:
                raise EmbeddingMismatch(
                    f"Collection '{name}' holds vectors from '{recorded}', but this server embeds with "
                    f"'{dense_model}'. Use another collection (CHATBOT_QDRANT__COLLECTION) or the same model."
                )
            sparse_cfg = info.config.params.sparse_vectors or {}
            self.has_sparse = SPARSE in sparse_cfg
            if uses_collection_idf(info, SPARSE):
                log.warning("collection '%s' uses collection-wide IDF: migrating to per-tenant IDF", name)
                moved = await migrate_to_tenant_idf(self.run, name, SPARSE)
                log.warning("collection '%s' migrated to per-tenant IDF (%d points)", name, moved)
            await self._index_payload(sparse=self.has_sparse, existing=set(info.payload_schema or {}))
            return
        await self.run(
            lambda c: c.create_collection(
                name,
                vectors_config={DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)},
                # no IDF modifier: Qdrant's is collection-wide; the query carries the tenant's IDF
                sparse_vectors_config={SPARSE: models.SparseVectorParams()} if sparse else None,
                shard_number=self.settings.shard_number,
                replication_factor=self.settings.replication_factor,
                metadata={
                    "dense_model": dense_model,
                    "dimensions": dimensions,
                    "sparse_model": SPARSE if sparse else None,
                    "sparse_idf": "tenant",
                },
            )
        )
        self.has_sparse = sparse
        await self._index_payload(sparse=sparse, existing=set())

    async def _index_payload(self, *, sparse: bool, existing: set[str]) -> None:
        """The payload indexes a server needs that the collection lacks: tenant, doc_id, and the BM25 term
        ids that per-tenant document frequencies are counted on (added to collections made before them)."""
        if self.settings.is_local:
            return  # payload indexes have no effect in local mode (qdrant-client warns); a server needs them
        wanted: dict[str, models.PayloadSchemaType | models.PayloadSchemaParams] = {
            "tenant": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            "doc_id": models.PayloadSchemaType.KEYWORD,
        }
        if sparse:
            wanted[TERMS_FIELD] = models.IntegerIndexParams(
                type=models.IntegerIndexType.INTEGER, lookup=True, range=False
            )
        for field, schema in wanted.items():
            if field not in existing:
                await self.run(_create_index(self.collection, field, schema))

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
            await self._index_fields(where)
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

    async def _index_fields(self, where: MetadataFilter) -> None:
        """On a server, create the payload index of each filtered field on its first use (local mode has no
        payload indexes). A field indexed with another type keeps its index: Qdrant still filters correctly."""
        if self.settings.is_local:
            return
        name = self.collection
        for field, schema in index_schemas(where).items():
            if field in self._indexed:
                continue
            self._indexed.add(field)
            try:
                await self.run(lambda c, f=field, t=schema: c.create_payload_index(name, f, t))  # type: ignore[misc]
            except VectorStoreUnavailable:
                self._indexed.discard(field)
                log.warning("could not create the payload index of %s", field)

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
            yield [stored for p in points if (stored := _stored_point(p)) is not None]
            if offset is None:
                return

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
        """Delete points by id (ids are uuid5 of their tenant: see stores.base.point_id). Unlike a delete by
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


def one_per_index(hits: Iterable[ScoredChunk]) -> list[ScoredChunk]:
    """Chunks in index order, one per chunk index."""
    by_index = {h.chunk_index: h for h in hits}
    return [by_index[i] for i in sorted(by_index)]


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


def _create_index(
    collection: str, field: str, schema: models.PayloadSchemaType | models.PayloadSchemaParams
) -> Operation[models.UpdateResult]:
    return lambda c: c.create_payload_index(collection, field, schema)


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
    return lambda c: c.upsert(collection, points=_points(records, dense, sparse, offset), wait=True)


def _points(
    records: Sequence[ChunkRecord],
    dense: Sequence[Sequence[float]],
    sparse: Sequence[SparseVector] | None,
    offset: int,
) -> list[models.PointStruct]:
    points = []
    for i, rec in enumerate(records, start=offset):
        vector: dict[str, Any] = {DENSE: list(dense[i])}
        payload = rec.payload()
        if sparse is not None:
            vector[SPARSE] = models.SparseVector(indices=sparse[i].indices, values=sparse[i].values)
            payload[TERMS_FIELD] = list(sparse[i].indices)
        points.append(models.PointStruct(id=rec.point_id, vector=vector, payload=payload))
    return points


def _stored_point(point: models.Record) -> StoredPoint | None:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    dense = vectors.get(DENSE)
    if dense is None:
        return None
    raw = vectors.get(SPARSE)
    sparse = (
        SparseVector(list(raw.indices), list(raw.values)) if isinstance(raw, models.SparseVector) else None
    )
    payload = point.payload or {}
    return StoredPoint(str(point.id), str(payload.get("tenant", "")), dense, sparse, payload)  # type: ignore[arg-type]
