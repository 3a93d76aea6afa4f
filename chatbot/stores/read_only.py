"""ReadOnlyStore: a VectorStore that answers reads from the store it wraps and refuses every write.

`serve --workers N` over the embedded store gives each worker process its own copy of the collection (the
embedded store is locked to one process); a write to one copy would be invisible to the others, so the copies
refuse writes with 409 store_read_only and ingestion happens before serving (or against a Qdrant server).
"""

# ruff: noqa: ARG002  (the writes are refused whatever their arguments)
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NoReturn

from chatbot.errors import Conflict
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
from chatbot.stores.records import DocumentInfo, Fusion

READ_ONLY_MESSAGE = (
    "This server's workers serve read-only copies of the embedded store: ingest before starting it, or "
    "share a Qdrant server (CHATBOT_QDRANT__URL)."
)


def refuse() -> NoReturn:
    raise Conflict(READ_ONLY_MESSAGE, code="store_read_only")


class ReadOnlyStore:
    """Reads go to `inner`; writes (set_version, upsert, delete_stale, delete_document) and a rebuild (staging,
    promote, discard: a reindex) raise store_read_only."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner

    @property
    def has_sparse(self) -> bool:
        return self.inner.has_sparse

    async def open(self) -> None:
        await self.inner.open()

    async def ensure_collection(self, dense_model: str, dimensions: int, *, sparse: bool) -> None:
        await self.inner.ensure_collection(dense_model, dimensions, sparse=sparse)

    async def recorded_model(self) -> str | None:
        return await self.inner.recorded_model()

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()

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
        return await self.inner.search(
            tenant,
            queries,
            mode=mode,
            limit=limit,
            prefetch_limit=prefetch_limit,
            score_threshold=score_threshold,
            fusion=fusion,
            where=where,
        )

    async def chunks(self, tenant: str, doc_id: str, first: int, last: int) -> list[ScoredChunk]:
        return await self.inner.chunks(tenant, doc_id, first, last)

    async def versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        return await self.inner.versions_of(ids)

    async def set_version(
        self, ids: Sequence[str], version: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        refuse()

    async def upsert(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
    ) -> None:
        refuse()

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        refuse()

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        refuse()

    async def list_documents(self, tenant: str) -> list[DocumentInfo]:
        return await self.inner.list_documents(tenant)

    async def count(self, tenant: str) -> int:
        return await self.inner.count(tenant)

    def stream_chunks(self) -> AsyncIterator[list[StoredChunk]]:
        return self.inner.stream_chunks()

    def staging(self, label: str) -> VectorStore:
        refuse()

    async def promote(self, staged: VectorStore, on_switch: Callable[[], None]) -> None:
        refuse()

    async def discard(self, staged: VectorStore) -> None:
        refuse()
