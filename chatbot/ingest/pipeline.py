"""The ingestion pipeline: plan (parse, chunk, diff against the store) -> embed -> write, the stages overlapping.

Three tasks joined by bounded queues, so the embedding model, the costly stage, is never idle while there is
work: the planner parses and chunks the next documents (in a thread or a worker process) while the model
embeds, and the writer (BM25 vectors, upserts, relabels, old-version deletes) works on the batch before.
Chunks of consecutive documents share embedding batches (up to `batch_size`), so many small documents still
give the model full batches; a partial batch is embedded at once rather than waiting for the planner.

Order is kept: a document is finished (relabelled, its old versions deleted) after every one of its chunks
is upserted, and documents finish in the order they were planned. A failure in any stage cancels the
others and is raised as it is; chunks already upserted stay (the next run finds them and writes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chatbot.providers.base import Embedder, SparseEmbedder
from chatbot.stores.base import ChunkRecord, VectorStore

PLANNED_AHEAD = 4
"""Documents planned ahead of the embedder (bounds the memory of parsed, unembedded documents)."""
BATCHES_AHEAD = 2
"""Embedded batches waiting for the writer: absorbs its jitter without letting memory grow."""


@dataclass(slots=True)
class Plan:
    """One parsed document and what its ingestion must do: embed and upsert `missing`, relabel `relabel`."""

    tenant: str
    source: str
    doc_id: str
    title: str
    version: str
    records: list[ChunkRecord]
    missing: list[ChunkRecord]
    texts: list[str]  # the embedding input of each missing record
    relabel: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Batch:
    records: list[ChunkRecord]
    texts: list[str]
    dense: list[list[float]]


@dataclass(frozen=True, slots=True)
class _Finish:
    plan: Plan


class Pipeline:
    """Runs plans through embed and write; `finish(plan)` completes a document once its chunks are written."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        sparse: SparseEmbedder | None,
        store: VectorStore,
        batch_size: int,
        finish: Callable[[Plan], Awaitable[None]],
        on_chunks: Callable[[int], None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.sparse = sparse
        self.store = store
        self.batch_size = batch_size
        self.finish = finish
        self.on_chunks = on_chunks

    async def run(self, plans: AsyncGenerator[Plan, None]) -> None:
        planned: asyncio.Queue[Plan | None] = asyncio.Queue(PLANNED_AHEAD)
        embedded: asyncio.Queue[_Batch | _Finish | None] = asyncio.Queue(BATCHES_AHEAD)
        tasks = [
            asyncio.create_task(self._plan(plans, planned), name="ingest-plan"),
            asyncio.create_task(self._embed(planned, embedded), name="ingest-embed"),
            asyncio.create_task(self._write(embedded), name="ingest-write"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _plan(self, plans: AsyncGenerator[Plan, None], planned: asyncio.Queue[Plan | None]) -> None:
        async with contextlib.aclosing(plans):  # cancelled or failed: the generator's cleanup runs now
            async for plan in plans:
                await planned.put(plan)
        await planned.put(None)

    async def _embed(
        self, planned: asyncio.Queue[Plan | None], embedded: asyncio.Queue[_Batch | _Finish | None]
    ) -> None:
        """Chunks of consecutive plans in batches of up to batch_size; a plan's _Finish after its last chunk."""
        pending: deque[tuple[ChunkRecord, str] | _Finish] = deque()
        chunks = 0  # chunk entries in `pending`
        exhausted = False
        while True:
            while chunks < self.batch_size and not exhausted:  # take what is planned; wait only when idle
                if pending:
                    try:
                        plan = planned.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                else:
                    plan = await planned.get()
                if plan is None:
                    exhausted = True
                    break
                pending.extend(zip(plan.missing, plan.texts, strict=True))
                pending.append(_Finish(plan))
                chunks += len(plan.missing)
            if not pending:
                await embedded.put(None)
                return
            batch: list[tuple[ChunkRecord, str]] = []
            finished: list[_Finish] = []
            while pending and (isinstance(pending[0], _Finish) or len(batch) < self.batch_size):
                entry = pending.popleft()
                if isinstance(entry, _Finish):
                    finished.append(entry)
                else:
                    batch.append(entry)
            chunks -= len(batch)
            if batch:
                texts = [text for _, text in batch]
                dense = await self.embedder.embed(texts, "document")
                await embedded.put(_Batch([record for record, _ in batch], texts, dense))
            for finish in finished:
                await embedded.put(finish)

    async def _write(self, embedded: asyncio.Queue[_Batch | _Finish | None]) -> None:
        while (item := await embedded.get()) is not None:
            if isinstance(item, _Finish):
                await self.finish(item.plan)
                continue
            sparse = (
                await self.sparse.embed_sparse(item.texts, "document")
                if self.sparse and self.store.has_sparse
                else None
            )
            await self.store.upsert(item.records, item.dense, sparse)
            if self.on_chunks:
                self.on_chunks(len(item.records))
