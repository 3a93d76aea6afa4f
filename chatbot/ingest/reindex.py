"""Re-embedding the collection with another embedder (`python -m chatbot reindex`), run as a job.

Every chunk of every tenant is read from the serving collection, embedded with the target embedder and
written, with its stored BM25 vector, into a staged collection beside it. Only when the copy is complete does
the store switch to it (VectorStore.promote: an alias in Qdrant), and the services embed queries with the
target embedder from that same moment; the old collection is dropped after. A cancelled or failed reindex
drops the staged collection instead: the old one never stopped serving. The collection records its new
embedder, so the next start-up serves it with no embedding setting (providers/registry.choose_embedder).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from chatbot.errors import BadRequest
from chatbot.ingest.chunking import Chunk
from chatbot.providers.base import Embedder, SparseVector
from chatbot.providers.registry import build_embedder, configured_embedder, embedder_name
from chatbot.settings import Settings
from chatbot.stores.base import ChunkRecord, VectorStore

log = logging.getLogger(__name__)
Notify = Callable[[], Awaitable[None]]


def target_embedder(settings: Settings, requested: str | None) -> str:
    """The embedder a reindex moves to: --embedder, else the configured one, else auto's choice for a new
    collection (so with OPENAI_API_KEY set, `reindex` alone moves an offline collection to OpenAI's)."""
    return (
        requested
        or configured_embedder(settings)
        or embedder_name(settings, settings.resolved_embedding_provider)
    )


def serving_settings(settings: Settings) -> Settings:
    """`settings` with no embedder configured: the collection opens with the embedder it records, whatever
    the settings ask for (the reindex is how a disagreeing setting is met)."""
    local = settings.local.model_dump(exclude={"embedding_model"})
    return settings.model_copy(update={"embedding_provider": "auto", "local": type(settings.local)(**local)})


def embed_text(record: ChunkRecord) -> str:
    """The text ingestion embedded for this chunk (chunking.Chunk.embed_text: headings in front)."""
    return Chunk(record.chunk_index, record.text, record.heading_path, record.content_hash).embed_text


class Reindexer:
    """Rebuilds `store`'s collection with another embedder; `use_embedder` switches the services to it.
    The new embedder is registered on `stack` (the services' exit stack) once it serves."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        stack: AsyncExitStack,
        use_embedder: Callable[[Embedder], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.stack = stack
        self.use_embedder = use_embedder
        self.batch_size = max(settings.local.batch_size, 32)

    def check(self, target: str) -> None:
        """Refuse at once what this process cannot reindex (before a job is queued)."""
        if self.settings.cache.enabled:
            raise BadRequest(
                "reindex with the answer cache on is not supported: its entries hold question vectors of "
                "the current embedder. Set CHATBOT_CACHE__ENABLED=false for the reindex.",
                code="reindex_unsupported",
            )
        if not target.startswith(("local/", "openai/", "cohere/")):
            raise BadRequest(f"Unknown embedder '{target}'.", code="unknown_embedder")

    async def run(self, target: str, progress: Any, notify: Notify) -> None:
        """Re-embed every chunk with `target` into a staged collection and switch to it. `progress` is a
        JobProgress: chunks read, written; its results name the embedders. Cancellation drops the copy."""
        self.check(target)
        current = await self.store.recorded_model()
        if current == target:
            raise BadRequest(f"The collection is already embedded with {target}.", code="same_embedder")
        async with AsyncExitStack() as owned:
            embedder = build_embedder(self.settings, target, owned)
            warm_up = getattr(embedder, "warm_up", None)
            if warm_up is not None:
                await warm_up()
            await self._rebuild(embedder, owned, progress, notify)
        log.info("reindex: %d chunks re-embedded with %s (was %s)", progress.written, target, current)

    async def _rebuild(
        self, embedder: Embedder, owned: AsyncExitStack, progress: Any, notify: Notify
    ) -> None:
        staged = self.store.staging(uuid.uuid4().hex[:8])
        switched = False

        def switch() -> None:
            nonlocal switched
            switched = True
            self.use_embedder(embedder)
            self.stack.push_async_exit(owned.pop_all())  # it serves now: closed with the services

        try:
            await staged.ensure_collection(embedder.name, embedder.dimensions, sparse=self.store.has_sparse)
            async for page in self.store.stream_chunks():
                for start in range(0, len(page), self.batch_size):
                    part = page[start : start + self.batch_size]
                    records = [record for record, _ in part]
                    progress.chunks += len(part)
                    dense = await embedder.embed([embed_text(r) for r in records], "document")
                    # a chunk without BM25 terms was stored without a sparse vector: it stays without one
                    bm25 = [vector or SparseVector([], []) for _, vector in part]
                    await staged.upsert(records, dense, bm25 if staged.has_sparse else None)
                    progress.written += len(part)
                    await notify()
            promote = asyncio.ensure_future(self.store.promote(staged, switch))
            try:
                await asyncio.shield(promote)
            except asyncio.CancelledError:
                await asyncio.wait([promote])  # a switch cut half-way could lose both collections
                log.warning("reindex cancelled during the switch, which completed: switched=%s", switched)
                raise
        except BaseException:
            if not switched:  # the copy never served: drop it, the old collection serves on
                await asyncio.shield(self._drop(staged))
            raise

    async def _drop(self, staged: VectorStore) -> None:
        """Drop the staged copy, unless the serving collection is gone (a switch that failed half-way):
        then the copy is all there is, and it stays for the operator."""
        if await self.store.ping():
            await self.store.discard(staged)
        else:
            log.error("reindex: the collection is gone after a failed switch; its staged copy was kept")
