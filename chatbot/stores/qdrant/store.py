"""The vector store: the only module above providers/ that touches qdrant_client.

Every search, scroll and delete goes through `tenant_filter`, which refuses to build a filter without a
tenant: a query can never silently search every tenant's documents.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from chatbot.errors import ChatbotError, EmbeddingMismatch, VectorStoreUnavailable
from chatbot.providers.base import SparseVector
from chatbot.rag.events import Source
from chatbot.settings import QdrantSettings
from chatbot.stores.qdrant.local_index import Hit, LocalIndex
from chatbot.stores.qdrant.loop_thread import LoopThread

log = logging.getLogger(__name__)
T = TypeVar("T")

DENSE = "dense"
SPARSE = "bm25"
POINT_NAMESPACE = uuid.UUID("6f0c2a52-52a4-4cf4-9d55-4f7d0b5a8a11")
SearchMode = Literal["dense", "sparse", "hybrid"]


@dataclass(frozen=True, slots=True)
class QueryVectors:
    """One query as vectors. Several of them (e.g. raw and rewritten question) are fused in one call."""

    dense: Sequence[float] | None = None
    sparse: SparseVector | None = None


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One chunk ready to store."""

    tenant: str
    doc_id: str
    source: str
    title: str
    heading_path: tuple[str, ...]
    chunk_index: int
    text: str
    content_hash: str
    version: str

    @property
    def point_id(self) -> str:
        return point_id(self.tenant, self.source, self.chunk_index, self.content_hash)

    def payload(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "heading_path": list(self.heading_path),
            "chunk_index": self.chunk_index,
            "text": self.text,
            "content_hash": self.content_hash,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    doc_id: str
    source: str
    title: str
    chunks: int
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "chunks": self.chunks,
            "version": self.version,
        }


def document_id(tenant: str, source: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"doc\x00{tenant}\x00{source}"))


def point_id(tenant: str, source: str, chunk_index: int, content_hash: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}\x00{source}\x00{chunk_index}\x00{content_hash}"))


def tenant_filter(
    tenant: str, *, doc_id: str | None = None, extra: models.Filter | None = None
) -> models.Filter:
    """The one way to scope a query. Without a tenant it raises instead of matching everything."""
    if not tenant or not isinstance(tenant, str):
        raise ValueError("a tenant is required for every vector store query")
    must: list[models.Condition] = [
        models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant))
    ]
    if doc_id is not None:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)))
    if extra is not None:
        must.append(extra)
    return models.Filter(must=must)


class VectorStore:
    """Owns the AsyncQdrantClient. Local mode runs on a private loop thread; a server is used directly."""

    def __init__(self, settings: QdrantSettings) -> None:
        self.settings = settings
        self.collection = settings.collection
        self._loop_thread: LoopThread | None = None
        self._client: AsyncQdrantClient | None = None
        self.has_sparse = False
        self.dense_model = ""
        self.dimensions = 0
        self.index: LocalIndex | None = None  # local mode: an exact in-memory mirror that answers searches

    async def open(self) -> None:
        if self.settings.is_local:
            self._loop_thread = LoopThread("qdrant-local")
            self._client = await self._loop_thread.run(self._make_client())
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
        return AsyncQdrantClient(path=location)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._call(self._client.close())
            self._client = None
        if self._loop_thread is not None:
            self._loop_thread.stop()
            self._loop_thread = None

    @property
    def client(self) -> AsyncQdrantClient:
        if self._client is None:
            raise RuntimeError("VectorStore.open() was not awaited")
        return self._client

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a client coroutine where it belongs, translating transport failures."""
        try:
            if self._loop_thread is not None:
                return await self._loop_thread.run(coro)
            return await coro
        except ChatbotError:
            raise
        except (ResponseHandlingException, UnexpectedResponse, ConnectionError, TimeoutError, OSError) as exc:
            log.warning("qdrant call failed: %r", exc)
            raise VectorStoreUnavailable(provider="qdrant") from exc

    # -- collection lifecycle ---------------------------------------------------------------------------

    async def ensure_collection(self, dense_model: str, dimensions: int, *, sparse: bool) -> None:
        """Create the collection on first use; refuse one that was filled by another embedding model."""
        self.dense_model = dense_model
        self.dimensions = dimensions
        exists = await self._call(self.client.collection_exists(self.collection))
        if exists:
            info = await self._call(self.client.get_collection(self.collection))
            meta = info.config.metadata or {}
            recorded = meta.get("dense_model")
            if recorded is not None and recorded != dense_model:
                raise EmbeddingMismatch(
                    f"Collection '{self.collection}' holds vectors from '{recorded}', but this server embeds with "
                    f"'{dense_model}'. Use another collection (CHATBOT_QDRANT__COLLECTION) or the same model."
                )
            sparse_cfg = info.config.params.sparse_vectors or {}
            self.has_sparse = SPARSE in sparse_cfg
            await self._load_index()
            return
        await self._call(
            self.client.create_collection(
                self.collection,
                vectors_config={DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)},
                sparse_vectors_config=(
                    {SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)} if sparse else None
                ),
                shard_number=self.settings.shard_number,
                replication_factor=self.settings.replication_factor,
                metadata={
                    "dense_model": dense_model,
                    "dimensions": dimensions,
                    "sparse_model": SPARSE if sparse else None,
                },
            )
        )
        self.has_sparse = sparse
        await self._load_index()
        if self.settings.is_local:
            return  # payload indexes have no effect in local mode (qdrant-client warns); a server needs them
        await self._call(
            self.client.create_payload_index(
                self.collection,
                "tenant",
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            )
        )
        await self._call(
            self.client.create_payload_index(self.collection, "doc_id", models.PayloadSchemaType.KEYWORD)
        )

    async def ping(self) -> bool:
        """True when the store answers and the collection exists."""
        try:
            return await asyncio.wait_for(
                self._call(self.client.collection_exists(self.collection)), timeout=2
            )
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
        fusion: Literal["rrf", "dbsf"] = "rrf",
    ) -> list[Source]:
        """Search in one call: one prefetch per (query, vector kind), fused server-side when there are several."""
        prefetch: list[models.Prefetch] = []
        for q in queries:
            if mode in ("dense", "hybrid") and q.dense is not None:
                prefetch.append(
                    models.Prefetch(
                        query=list(q.dense),
                        using=DENSE,
                        limit=prefetch_limit,
                        score_threshold=score_threshold,
                    )
                )
            if mode in ("sparse", "hybrid") and q.sparse is not None and self.has_sparse and q.sparse.indices:
                prefetch.append(
                    models.Prefetch(
                        query=models.SparseVector(indices=q.sparse.indices, values=q.sparse.values),
                        using=SPARSE,
                        limit=prefetch_limit,
                    )
                )
        if not prefetch:
            return []
        if self.index is not None and (len(prefetch) == 1 or fusion == "rrf"):
            return self._search_index(tenant, prefetch, limit)
        flt = tenant_filter(tenant)
        if len(prefetch) == 1:
            only = prefetch[0]
            response = await self._call(
                self.client.query_points(
                    self.collection,
                    query=only.query,
                    using=only.using,
                    limit=limit,
                    score_threshold=only.score_threshold,
                    query_filter=flt,
                    with_payload=True,
                )
            )
        else:
            for p in prefetch:
                p.filter = flt
            response = await self._call(
                self.client.query_points(
                    self.collection,
                    prefetch=prefetch,
                    query=models.FusionQuery(
                        fusion=models.Fusion.DBSF if fusion == "dbsf" else models.Fusion.RRF
                    ),
                    limit=limit,
                    query_filter=flt,
                    with_payload=True,
                )
            )
        return [_to_source(n, point) for n, point in enumerate(response.points, start=1)]

    def _search_index(self, tenant: str, prefetch: list[models.Prefetch], limit: int) -> list[Source]:
        """The same search as Qdrant's, answered by the in-memory mirror (RRF when several prefetches)."""
        assert self.index is not None  # noqa: S101 - checked by the caller
        tenant_filter(tenant)  # the same guard as every Qdrant query
        lists = []
        for p in prefetch:
            depth = limit if len(prefetch) == 1 else int(p.limit or limit)
            if p.using == DENSE:
                lists.append(self.index.dense_search(tenant, p.query, depth, p.score_threshold))  # type: ignore[arg-type]
            else:
                q = p.query
                lists.append(
                    self.index.sparse_search(tenant, SparseVector(list(q.indices), list(q.values)), depth)  # type: ignore[union-attr]
                )
        hits = lists[0] if len(lists) == 1 else LocalIndex.rrf(lists, limit)
        return [_hit_source(n, hit) for n, hit in enumerate(hits, start=1)]

    async def _load_index(self) -> None:
        """Local mode: mirror the collection in memory (once, at start-up) when settings.memory_index is on."""
        if not (self.settings.is_local and self.settings.memory_index):
            return
        self.index = await self._call(self._read_all(LocalIndex(self.dimensions)))

    async def _read_all(self, index: LocalIndex) -> LocalIndex:
        offset: Any = None
        while True:
            points, offset = await self.client.scroll(
                self.collection, limit=1024, offset=offset, with_payload=True, with_vectors=True
            )
            for p in points:
                vectors = p.vector if isinstance(p.vector, dict) else {}
                dense = vectors.get(DENSE)
                raw = vectors.get(SPARSE)
                sparse = SparseVector(list(raw.indices), list(raw.values)) if raw is not None else None  # type: ignore[union-attr]
                payload = p.payload or {}
                if dense is not None:
                    index.upsert(str(p.id), str(payload.get("tenant", "")), dense, sparse, payload)  # type: ignore[arg-type]
            if offset is None:
                return index

    # -- writes -------------------------------------------------------------------------------------------

    async def versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored `version` of each id that exists."""
        if not ids:
            return {}
        found = await self._call(
            self.client.retrieve(self.collection, ids=list(ids), with_payload=["version"])
        )
        return {str(p.id): str((p.payload or {}).get("version", "")) for p in found}

    async def set_version(self, ids: Sequence[str], version: str) -> None:
        if ids:
            await self._call(
                self.client.set_payload(
                    self.collection, payload={"version": version}, points=list(ids), wait=True
                )
            )
            if self.index is not None:
                self.index.set_payload(ids, {"version": version})

    async def upsert(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
    ) -> None:
        with_sparse = sparse if sparse is not None and self.has_sparse else None
        size = self.settings.upsert_batch
        for start in range(0, len(records), size):
            # points are built inside the coroutine: in local mode on Qdrant's thread, not the serving loop
            await self._call(self._upsert_batch(records[start : start + size], dense, with_sparse, start))
        if self.index is not None:
            for i, rec in enumerate(records):
                self.index.upsert(
                    rec.point_id, rec.tenant, dense[i], with_sparse[i] if with_sparse else None, rec.payload()
                )

    async def _upsert_batch(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
        offset: int,
    ) -> None:
        points = []
        for i, rec in enumerate(records, start=offset):
            vector: dict[str, Any] = {DENSE: list(dense[i])}
            if sparse is not None:
                vector[SPARSE] = models.SparseVector(indices=sparse[i].indices, values=sparse[i].values)
            points.append(models.PointStruct(id=rec.point_id, vector=vector, payload=rec.payload()))
        await self.client.upsert(self.collection, points=points, wait=True)

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Remove chunks of older versions of a document (after the new version is fully written)."""
        flt = tenant_filter(
            tenant,
            doc_id=doc_id,
            extra=models.Filter(
                must_not=[models.FieldCondition(key="version", match=models.MatchValue(value=keep_version))]
            ),
        )
        await self._call(
            self.client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)
        )
        if self.index is not None:
            self.index.delete(self.index.ids_where(tenant, doc_id=doc_id, not_version=keep_version))

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        flt = tenant_filter(tenant, doc_id=doc_id)
        count = await self._call(self.client.count(self.collection, count_filter=flt, exact=True))
        if count.count:
            await self._call(
                self.client.delete(
                    self.collection, points_selector=models.FilterSelector(filter=flt), wait=True
                )
            )
        if self.index is not None:
            self.index.delete(self.index.ids_where(tenant, doc_id=doc_id))
        return count.count

    async def list_documents(self, tenant: str) -> list[DocumentInfo]:
        """Every document of a tenant with its chunk count (scrolls payloads; fine for thousands of chunks)."""
        docs: dict[str, dict[str, Any]] = {}
        offset: Any = None
        flt = tenant_filter(tenant)
        while True:
            points, offset = await self._call(
                self.client.scroll(
                    self.collection,
                    scroll_filter=flt,
                    limit=512,
                    offset=offset,
                    with_payload=["doc_id", "source", "title", "version"],
                )
            )
            for p in points:
                pl = p.payload or {}
                entry = docs.setdefault(
                    str(pl.get("doc_id")),
                    {
                        "source": pl.get("source", ""),
                        "title": pl.get("title", ""),
                        "version": pl.get("version", ""),
                        "n": 0,
                    },
                )
                entry["n"] += 1
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
        result = await self._call(
            self.client.count(self.collection, count_filter=tenant_filter(tenant), exact=True)
        )
        return result.count


def _hit_source(n: int, hit: Hit) -> Source:
    return Source.from_dict({**hit.payload, "n": n, "score": hit.score})


def _to_source(n: int, point: models.ScoredPoint) -> Source:
    return Source.from_dict({**(point.payload or {}), "n": n, "score": point.score})
