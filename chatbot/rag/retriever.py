"""The retriever: a question in, ranked sources out (embed -> search -> rerank).

    retriever = Retriever(store=..., embedder=..., sparse=..., reranker=..., settings=retrieval, deadlines=...)
    sources = await retriever.search(tenant, question)

The pipeline uses its stages (it embeds the question while it loads the history, and fuses a rewritten
follow-up with the raw question in one search); the evaluation harness uses `search`. Both run this code
with the deployment's retrieval settings, so the harness measures what users get.

- embed:    the question as the vectors the search mode uses (dense and BM25 concurrently for hybrid).
- search:   one vector store call for every query, fused (RRF or DBSF) when there are several probes;
            `rerank_candidates` candidates with a reranker, else `top_k`.
- rerank:   the candidates in the reranker's order, renumbered. A reranker outage or a missed deadline
            keeps the search order: the hybrid order is still a good answer.
Each stage has its deadline (DeadlineExceeded names the stage) and records its milliseconds in `timings`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from chatbot.errors import DeadlineExceeded, UpstreamError
from chatbot.events import Source
from chatbot.ops import tracing
from chatbot.providers.base import Embedder, Reranker, SparseEmbedder
from chatbot.settings import DeadlineSettings, RetrievalSettings
from chatbot.stores.base import MetadataFilter, QueryVectors, ScoredChunk, SearchMode, VectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class Retriever:
    def __init__(
        self,
        *,
        store: VectorStore,
        embedder: Embedder,
        sparse: SparseEmbedder | None,
        reranker: Reranker | None,
        settings: RetrievalSettings,
        deadlines: DeadlineSettings,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.reranker = reranker
        self.settings = settings
        self.deadlines = deadlines

    @property
    def mode(self) -> SearchMode:
        """The search mode in effect: `auto` is hybrid when BM25 vectors exist; without them, always dense."""
        mode = self.settings.mode
        has_sparse = self.sparse is not None and self.store.has_sparse
        if mode == "auto":
            return "hybrid" if has_sparse else "dense"
        if mode in ("sparse", "hybrid") and not has_sparse:
            return "dense"
        return mode

    async def search(
        self,
        tenant: str,
        question: str,
        timings: dict[str, float] | None = None,
        *,
        where: MetadataFilter | None = None,
        top_k: int | None = None,
    ) -> list[Source]:
        """One question end to end: embed, search, rerank (among the chunks `where` matches; the best
        `top_k`, default the retrieval setting)."""
        timings = {} if timings is None else timings
        vectors = await self.embed(question, timings)
        return await self.retrieve(tenant, [vectors], question, timings, where=where, top_k=top_k)

    async def embed(self, text: str, timings: dict[str, float] | None = None) -> QueryVectors:
        """`text` as the vectors the search mode uses (stage `embed`)."""
        return await staged(
            "embed", self.deadlines.embed, self._embed(text, self.mode), {} if timings is None else timings
        )

    async def retrieve(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        rerank_query: str,
        timings: dict[str, float] | None = None,
        *,
        where: MetadataFilter | None = None,
        top_k: int | None = None,
    ) -> list[Source]:
        """The best `top_k` sources for `queries` searched together (stage `retrieve`) among the chunks whose
        metadata `where` matches, reranked for `rerank_query` when a reranker is configured (stage `rerank`)."""
        timings = {} if timings is None else timings
        s = self.settings
        k = top_k or s.top_k
        chunks = await staged(
            "retrieve",
            self.deadlines.retrieve,
            self.store.search(
                tenant,
                queries,
                mode=self.mode,
                limit=max(s.rerank_candidates, k) if self.reranker else k,
                prefetch_limit=max(s.prefetch_limit, k),
                score_threshold=s.score_threshold,
                fusion=s.fusion,
                where=where,
            ),
            timings,
        )
        if self.reranker is not None and chunks:
            try:
                reranking = self._rerank(self.reranker, rerank_query, chunks, k)
                chunks = await staged("rerank", self.deadlines.retrieve, reranking, timings)
            except (UpstreamError, DeadlineExceeded) as exc:
                log.warning("rerank failed (%s); answering from the retrieval order", exc.code)
        return as_sources(chunks[:k])

    async def _embed(self, text: str, mode: SearchMode) -> QueryVectors:
        sparse = self.sparse
        if mode == "sparse" and sparse is not None:
            return QueryVectors(sparse=(await sparse.embed_sparse([text], "query"))[0])
        if mode == "hybrid" and sparse is not None:
            dense, terms = await asyncio.gather(
                self.embedder.embed([text], "query"), sparse.embed_sparse([text], "query")
            )
            return QueryVectors(dense=dense[0], sparse=terms[0])
        return QueryVectors(dense=(await self.embedder.embed([text], "query"))[0])

    async def _rerank(
        self, reranker: Reranker, query: str, chunks: list[ScoredChunk], top_k: int
    ) -> list[ScoredChunk]:
        ranked = await reranker.rerank(query, [c.text for c in chunks], top_k)
        return [dataclasses.replace(chunks[r.index], score=r.score) for r in ranked]


def as_sources(chunks: Sequence[ScoredChunk]) -> list[Source]:
    """Hits as the sources an answer cites, numbered [1], [2], ... in order."""
    return [
        Source(
            n=n,
            doc_id=c.doc_id,
            source=c.source,
            title=c.title,
            heading_path=c.heading_path,
            chunk_index=c.chunk_index,
            text=c.text,
            score=c.score,
            page_start=c.page_start,
            page_end=c.page_end,
            char_start=c.char_start,
            char_end=c.char_end,
        )
        for n, c in enumerate(chunks, start=1)
    ]


def as_chunks(sources: Sequence[Source]) -> list[ScoredChunk]:
    """The inverse of as_sources (the answer cache stores chunks in the answer's order)."""
    return [
        ScoredChunk(
            doc_id=s.doc_id,
            source=s.source,
            title=s.title,
            heading_path=tuple(s.heading_path),
            chunk_index=s.chunk_index,
            text=s.text,
            score=s.score,
            page_start=s.page_start,
            page_end=s.page_end,
            char_start=s.char_start,
            char_end=s.char_end,
        )
        for s in sources
    ]


async def staged(stage: str, seconds: float, aw: Awaitable[T], timings: dict[str, float]) -> T:
    """Await `aw` within `seconds` (else DeadlineExceeded(stage)); adds its milliseconds to timings[stage]."""
    started = time.perf_counter()
    try:
        with tracing.stage(stage):
            async with asyncio.timeout(seconds):
                result = await aw
    except TimeoutError:
        raise DeadlineExceeded(stage, seconds) from None
    timings[stage] = timings.get(stage, 0.0) + elapsed_ms(started)
    return result


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
