"""BatchingEmbedder: the evaluation harness's ingestion adapter (same vectors, fewer inference calls)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from chatbot.providers.base import Embedder, EmbedKind


class BatchingEmbedder:
    """Embedder adapter for bulk ingestion: calls made while a batch runs are merged into the next batch.

    Ingesting documents one at a time gives the model batches of two or three chunks; with several
    documents in flight, this hands it up to `max_batch` texts per call. The vectors are the inner
    embedder's. Each caller gets its own vectors back, or the batch's exception.
    """

    def __init__(self, inner: Embedder, *, max_batch: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.distance = inner.distance
        self.max_batch = max_batch
        self.calls = 0
        self._pending: list[tuple[list[str], EmbedKind, asyncio.Future[list[list[float]]]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        if not texts:
            return []
        future: asyncio.Future[list[list[float]]] = asyncio.get_running_loop().create_future()
        self._pending.append((list(texts), kind, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="eval-embed-batches")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            kind = self._pending[0][1]
            batch: list[tuple[list[str], EmbedKind, asyncio.Future[list[list[float]]]]] = []
            size = 0
            for item in list(self._pending):
                if item[1] == kind and (not batch or size + len(item[0]) <= self.max_batch):
                    batch.append(item)
                    size += len(item[0])
                    self._pending.remove(item)
            self.calls += 1
            try:
                vectors = await self.inner.embed([t for texts, _, _ in batch for t in texts], kind)
            except asyncio.CancelledError:
                for _, _, future in batch + self._pending:
                    future.cancel()
                self._pending.clear()
                raise
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for texts, _, future in batch:
                if not future.done():
                    future.set_result(vectors[start : start + len(texts)])
                start += len(texts)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
