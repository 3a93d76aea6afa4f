"""Retrieval evaluation on a BEIR-layout data set, through the product's own ingestion and search paths.

    python -m chatbot eval --corpus corpus.jsonl --queries queries.jsonl --qrels qrels/test.tsv \
        [--modes dense,sparse,hybrid,rerank] [--limit-queries N] [--json] [--store DIR [--collection NAME]]

The corpus is ingested with `Ingestor.ingest_bytes`, one markdown document per corpus line (the title as
its heading, so it reaches every chunk's embed text as the user guide's headings do), under the tenant
"eval": into a scratch in-memory collection, or with `--store` into a kept collection that later runs
reuse while it holds the same corpus ingested the same way (eval/stored.py: a fingerprint of the corpus,
embedder, BM25 and chunking parameters; a mismatch re-ingests and says why). Every query then runs through
the pipeline's own `Retriever` (rag/retriever.py: embed -> search -> rerank) with the deployment's
retrieval settings (prefetch_limit, fusion, score_threshold, rerank_candidates), the search mode set to the
mode evaluated and `top_k` raised to 100 for Recall@100. Search results are chunks; a document is ranked
where its best chunk is. `rerank` is hybrid search reranked by the configured reranker, exactly as the
pipeline does: the reranker orders the `rerank_candidates` best hits (Cohere only: no reranker runs offline).

Metrics (eval/metrics.py) follow BEIR (pytrec_eval): nDCG@10 with linear gains, Recall@100 and MRR@10,
averaged over the queries that have at least one relevant document in the qrels, for all of them and for
the dev and test halves (split by a hash of the query id: tune on dev, confirm on test). Latency is per
query, wall clock, from embedding the question to the ranked list (p50/p99, nearest rank).

Adapter, documented: the corpus is ingested by `concurrency` documents at a time, and the embedder is
wrapped in `BatchingEmbedder` (eval/batching.py), which merges the concurrent per-document embed calls into full batches
(same vectors, fewer inference calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from tqdm import tqdm

from chatbot.errors import ConfigError, UnreadableDocument
from chatbot.eval.answers import AnswerCase, AnswerResult, beir_cases, evaluate_answers, format_answers
from chatbot.eval.batching import BatchingEmbedder
from chatbot.eval.beir import BeirData, CorpusDoc, corpus_id, document_bytes, document_source, read_beir
from chatbot.eval.metrics import RECALL_K, ModeResult, rank_by_score, score_run, unique
from chatbot.eval.stored import StoredCollection, fingerprint
from chatbot.ingest.service import Ingestor
from chatbot.providers.registry import Providers, build_providers
from chatbot.rag.retriever import Retriever
from chatbot.settings import Settings
from chatbot.stores.base import VectorStore
from chatbot.stores.factory import vector_store

EvalMode = Literal["dense", "sparse", "hybrid", "rerank"]
ALL_MODES: tuple[EvalMode, ...] = ("dense", "sparse", "hybrid", "rerank")
EVAL_TENANT = "eval"


# -- the run ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class IngestStats:
    documents: int = 0
    skipped: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embed_calls: int = 0
    reused: bool = False  # read from the kept collection: the figures are its ingest's

    @classmethod
    def recorded(cls, figures: dict[str, Any]) -> IngestStats:
        """The figures a kept collection's ingest recorded (to_dict's), marked as reused."""
        known = ("documents", "skipped", "chunks", "seconds", "embed_calls")
        return cls(reused=True, **{k: type(getattr(cls(), k))(figures[k]) for k in known if k in figures})

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "skipped": self.skipped,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 2),
            "chunks_per_second": round(self.chunks_per_second, 1),
            "embed_calls": self.embed_calls,
            "reused": self.reused,
        }


@dataclass(slots=True)
class EvalReport:
    embedder: str
    sparse: str
    reranker: str
    fusion: str
    prefetch_limit: int
    ingest: IngestStats
    results: list[ModeResult] = field(default_factory=list)
    answers: list[AnswerResult] = field(default_factory=list)  # eval --answers (eval/answers.py)
    chat: str = ""

    def to_dict(self) -> dict[str, Any]:
        answers = {"chat": self.chat, "modes": {r.mode: r.to_dict() for r in self.answers}}
        return {
            "embedder": self.embedder,
            "sparse": self.sparse,
            "reranker": self.reranker,
            "fusion": self.fusion,
            "prefetch_limit": self.prefetch_limit,
            "ingest": self.ingest.to_dict(),
            "modes": {r.mode: r.to_dict() for r in self.results},
        } | ({"answers": answers} if self.answers else {})


def format_table(report: EvalReport) -> str:
    ing = report.ingest
    lines = [
        f"embedder {report.embedder}, sparse {report.sparse}, reranker {report.reranker}, "
        f"fusion {report.fusion}, prefetch_limit {report.prefetch_limit}",
        ("reused a collection that ingested " if ing.reused else "ingested ")
        + f"{ing.documents} documents, {ing.chunks} chunks in {ing.seconds:.1f} s "
        f"({ing.chunks_per_second:.1f} chunks/s, {ing.embed_calls} embed calls)",
        "",
        f"{'mode':<8} {'split':<7} {'nDCG@10':>8} {'Recall@100':>11} {'MRR@10':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'queries':>7}",
    ]
    for r in report.results:
        for name, row in [("all", r), *r.splits.items()]:
            lines.append(
                f"{r.mode:<8} {name:<7} {row.ndcg_at_10:>8.4f} {row.recall_at_100:>11.4f} "
                f"{row.mrr_at_10:>8.4f} {row.p50_ms:>8.1f} {row.p99_ms:>8.1f} {row.queries:>7d}"
            )
    if report.answers:
        lines += ["", format_answers(report.answers, report.chat)]
    return "\n".join(lines)


def parse_modes(text: str | None, *, rerank_available: bool) -> list[EvalMode]:
    """`dense,sparse,hybrid[,rerank]`; by default every mode, rerank only when a reranker is configured."""
    if not text:
        return [m for m in ALL_MODES if m != "rerank" or rerank_available]
    by_name: dict[str, EvalMode] = {m: m for m in ALL_MODES}
    modes: list[EvalMode] = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        mode = by_name.get(name)
        if mode is None:
            raise ConfigError(f"Unknown mode '{name}': choose from {', '.join(ALL_MODES)}.")
        if mode == "rerank" and not rerank_available:
            raise ConfigError("Mode rerank needs a reranker: set COHERE_API_KEY (no reranker runs offline).")
        modes.append(mode)
    return modes


def eval_settings(settings: Settings, stored: StoredCollection | None = None) -> Settings:
    """The deployment's settings (its store knobs too) with the sparse model on and the evaluation's own store:
    a scratch in-memory one, or the kept collection's folder."""
    if stored is None:
        scratch = {"url": None, "api_key": None, "path": ":memory:", "collection": "eval"}
    else:
        scratch = {"url": None, "api_key": None, "path": str(stored.index), "collection": stored.name}
    return settings.model_copy(
        update={
            "qdrant": settings.qdrant.model_copy(update=scratch),
            "retrieval": settings.retrieval.model_copy(
                update={"mode": "auto" if settings.retrieval.mode == "dense" else settings.retrieval.mode}
            ),
        }
    )


@contextlib.asynccontextmanager
async def _providers(settings: Settings, providers: Providers | None) -> AsyncIterator[Providers]:
    async with AsyncExitStack() as stack:
        if providers is None:
            providers = build_providers(settings, stack)
        warm_up = getattr(providers.embedder, "warm_up", None)
        if warm_up is not None:
            await warm_up()
        yield providers


@contextlib.asynccontextmanager
async def _opened(settings: Settings, providers: Providers) -> AsyncIterator[VectorStore]:
    store = vector_store(settings.qdrant)
    await store.open()
    try:
        await store.ensure_collection(providers.embedder.name, providers.embedder.dimensions, sparse=True)
        yield store
    finally:
        await store.aclose()


def retriever_for(settings: Settings, store: VectorStore, providers: Providers, mode: EvalMode) -> Retriever:
    """The pipeline's retriever as `mode` runs it: its search mode (rerank: hybrid, reranked), top 100."""
    retrieval = settings.retrieval.model_copy(
        update={"mode": "hybrid" if mode == "rerank" else mode, "top_k": RECALL_K}
    )
    return Retriever(
        store=store,
        embedder=providers.embedder,
        sparse=providers.sparse,
        reranker=providers.reranker if mode == "rerank" else None,
        settings=retrieval,
        deadlines=settings.deadlines,
    )


async def ingest_corpus(
    ingestor: Ingestor, corpus: Sequence[CorpusDoc], *, concurrency: int, progress: bool
) -> IngestStats:
    """Every corpus entry through Ingestor.ingest_bytes, `concurrency` at a time, with a progress bar."""
    stats = IngestStats()
    started = time.perf_counter()
    queue = iter(corpus)
    with tqdm(total=len(corpus), unit="doc", desc="ingest", disable=not progress, file=sys.stderr) as bar:

        async def worker() -> None:
            for doc in queue:
                try:
                    result = await ingestor.ingest_bytes(
                        EVAL_TENANT, document_source(doc.doc_id), document_bytes(doc)
                    )
                except UnreadableDocument:  # an entry without text: the product refuses it too
                    stats.skipped += 1
                else:
                    stats.documents += 1
                    stats.chunks += result.chunks
                bar.update(1)
                if stats.documents % 50 == 0:
                    elapsed = time.perf_counter() - started
                    bar.set_postfix(chunks=stats.chunks, chunks_per_s=f"{stats.chunks / elapsed:.0f}")

        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, len(corpus)))):
                group.create_task(worker())
        stats.seconds = time.perf_counter() - started
        bar.set_postfix(chunks=stats.chunks, chunks_per_s=f"{stats.chunks_per_second:.0f}")
    return stats


async def run_evaluation(
    settings: Settings,
    data: BeirData,
    *,
    modes: str | None = None,
    limit_queries: int | None = None,
    providers: Providers | None = None,
    concurrency: int = 16,
    progress: bool = True,
    answer_cases: Sequence[AnswerCase] | None = None,
    stored: StoredCollection | None = None,
    log: TextIO | None = None,
) -> EvalReport:
    """Ingest `data.corpus` into a scratch collection (or reuse the `stored` one when it already holds this
    corpus as these providers ingest it), run the judged queries per mode, score them; with
    `answer_cases`, also answer them through the pipeline per mode (eval/answers.py)."""
    settings = eval_settings(settings, stored)
    async with _providers(settings, providers) as providers:
        wanted = parse_modes(modes, rerank_available=providers.reranker is not None)
        if providers.sparse is None and any(m != "dense" for m in wanted):
            raise ConfigError("Modes sparse, hybrid and rerank need the BM25 sparse model.")
        reuse = False
        if stored is not None:
            print_ = log or sys.stderr
            want = fingerprint(data.corpus, providers)
            reason = await asyncio.to_thread(stored.explain, want)
            reuse = reason is None
            if reuse:
                print(f"reusing the ingested collection {stored.folder}", file=print_, flush=True)
            else:
                print(f"ingesting into {stored.folder} ({reason})", file=print_, flush=True)
                await asyncio.to_thread(stored.reset)
        async with _opened(settings, providers) as store:
            if reuse and stored is not None:
                stats = IngestStats.recorded(stored.ingest_figures())
            else:
                stats = await _ingest(settings, providers, store, data, concurrency, progress)
                if stored is not None:
                    await asyncio.to_thread(stored.record, want, stats.to_dict())
            report = EvalReport(
                embedder=providers.embedder.name,
                sparse=providers.sparse.name if providers.sparse else "none",
                reranker=providers.reranker.name if providers.reranker else "none",
                fusion=settings.retrieval.fusion,
                prefetch_limit=settings.retrieval.prefetch_limit,
                ingest=stats,
            )
            judged = [q for q in data.queries if any(g > 0 for g in data.qrels.get(q, {}).values())]
            if limit_queries is not None:
                judged = judged[:limit_queries]
            for mode in wanted:
                retriever = retriever_for(settings, store, providers, mode)
                run: dict[str, list[str]] = {}
                latencies: dict[str, float] = {}
                for qid in tqdm(judged, unit="query", desc=mode, disable=not progress, file=sys.stderr):
                    started = time.perf_counter()
                    sources = await retriever.search(EVAL_TENANT, data.queries[qid])
                    latencies[qid] = (time.perf_counter() - started) * 1000
                    run[qid] = (
                        unique(corpus_id(s.source) for s in sources)
                        if mode == "rerank"
                        else rank_by_score((corpus_id(s.source), s.score) for s in sources)
                    )
                report.results.append(score_run(mode, run, data.qrels, latencies, splits=True))
            if answer_cases is not None:
                report.chat = providers.chat.name
                for mode in wanted:
                    report.answers.append(
                        await evaluate_answers(settings, store, providers, mode, answer_cases, EVAL_TENANT)
                    )
            return report


async def _ingest(
    settings: Settings,
    providers: Providers,
    store: VectorStore,
    data: BeirData,
    concurrency: int,
    progress: bool,
) -> IngestStats:
    batching = BatchingEmbedder(providers.embedder, max_batch=settings.local.batch_size)
    ingestor = Ingestor(
        embedder=batching,
        sparse=providers.sparse,
        store=store,
        batch_size=settings.local.batch_size,
        max_bytes=settings.limits.max_upload_bytes,
    )
    try:
        stats = await ingest_corpus(ingestor, data.corpus, concurrency=concurrency, progress=progress)
    finally:
        await batching.aclose()
    stats.embed_calls = batching.calls
    return stats


async def eval_command(
    settings: Settings,
    *,
    corpus: Path,
    queries: Path,
    qrels: Path,
    modes: str | None = None,
    limit_queries: int | None = None,
    as_json: bool = False,
    providers: Providers | None = None,
    progress: bool = True,
    out: TextIO | None = None,
    answers: Sequence[AnswerCase] | None = None,
    store: Path | None = None,
    collection: str = "eval",
    log: TextIO | None = None,
) -> EvalReport:
    """`python -m chatbot eval`: read the data set, evaluate, print a table or JSON. With `answers` (cases
    beside the judged queries: unanswerable questions, pairs), answer-level metrics too."""
    data = await asyncio.to_thread(read_beir, corpus, queries, qrels)
    cases = None if answers is None else [*beir_cases(data, limit_queries), *answers]
    report = await run_evaluation(
        settings,
        data,
        modes=modes,
        limit_queries=limit_queries,
        providers=providers,
        progress=progress,
        answer_cases=cases,
        stored=None if store is None else StoredCollection(store, collection),
        log=log,
    )
    text = json.dumps(report.to_dict(), indent=2) if as_json else format_table(report)
    print(text, file=out or sys.stdout, flush=True)
    return report
