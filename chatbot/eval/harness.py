"""Retrieval evaluation on a BEIR-layout data set, through the product's own ingestion and search paths.

    python -m chatbot eval --corpus corpus.jsonl --queries queries.jsonl --qrels qrels/test.tsv \
        [--modes dense,sparse,hybrid,rerank] [--limit-queries N] [--json]

The corpus is ingested with `Ingestor.ingest_bytes`, one markdown document per corpus line (the title as
its heading, so it reaches every chunk's embed text as the user guide's headings do), into a scratch
in-memory collection under the tenant "eval". Every query then runs the way the pipeline retrieves:
the question is embedded (dense and/or BM25) and sent to `VectorStore.search` in one call, with the
deployment's retrieval settings (prefetch_limit, fusion, score_threshold). Search results are chunks;
a document is ranked where its best chunk is. `rerank` reranks the hybrid candidates with the configured
reranker, as the pipeline does (Cohere only: no reranker runs offline).

Metrics follow BEIR (pytrec_eval): nDCG@10 with linear gains, Recall@100 and MRR@10, averaged over the
queries that have at least one relevant document in the qrels. Latency is per query, wall clock, from
embedding the question to the ranked list (p50/p99, nearest rank).

Adapter, documented: the corpus is ingested by `concurrency` documents at a time, and the embedder is
wrapped in `BatchingEmbedder`, which merges the concurrent per-document embed calls into full batches
(same vectors, fewer inference calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from tqdm import tqdm

from chatbot.errors import ConfigError, UnreadableDocument
from chatbot.ingest.service import Ingestor
from chatbot.providers.base import Embedder, EmbedKind, Reranker, SparseEmbedder
from chatbot.providers.registry import Providers, build_providers
from chatbot.rag.events import Source
from chatbot.rag.pipeline import embed_query
from chatbot.settings import Settings
from chatbot.stores.qdrant.store import SearchMode, VectorStore

EvalMode = Literal["dense", "sparse", "hybrid", "rerank"]
ALL_MODES: tuple[EvalMode, ...] = ("dense", "sparse", "hybrid", "rerank")
EVAL_TENANT = "eval"
SOURCE_SUFFIX = ".md"
NDCG_K = 10
RECALL_K = 100
MRR_K = 10

# -- reading the BEIR layout ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class BeirData:
    corpus: list[CorpusDoc]
    queries: dict[str, str]  # query id -> text, in file order
    qrels: dict[str, dict[str, int]]  # query id -> corpus id -> graded relevance


def read_corpus(path: Path) -> list[CorpusDoc]:
    """corpus.jsonl: one {"_id", "title", "text"} object a line."""
    return [
        CorpusDoc(str(row["_id"]), str(row.get("title") or ""), str(row.get("text") or ""))
        for row in _jsonl(path)
    ]


def read_queries(path: Path) -> dict[str, str]:
    """queries.jsonl: one {"_id", "text"} object a line."""
    return {str(row["_id"]): str(row["text"]) for row in _jsonl(path)}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """qrels TSV with a header line: query-id, corpus-id, score."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, None)
        if header is None or [h.strip().lower() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise ConfigError(f"{path}: expected a header line 'query-id<TAB>corpus-id<TAB>score'.")
        for row in rows:
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def read_beir(corpus: Path, queries: Path, qrels: Path) -> BeirData:
    for path in (corpus, queries, qrels):
        if not path.is_file():
            raise ConfigError(f"No such file: {path}")
    return BeirData(read_corpus(corpus), read_queries(queries), read_qrels(qrels))


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{number}: not a JSON object.") from exc


# -- metrics (pure) ---------------------------------------------------------------------------------


def unique(ranked: Iterable[str]) -> list[str]:
    """Ids in order, each kept at its first (best) rank: several chunks of one document count once."""
    return list(dict.fromkeys(ranked))


def rank_by_score(hits: Iterable[tuple[str, float]]) -> list[str]:
    """Document ids by best score, highest first; equal scores (common with RRF) by id, so a run does not
    depend on how the store orders ties."""
    best: dict[str, float] = {}
    for doc, score in hits:
        if doc not in best or score > best[doc]:
            best[doc] = score
    return sorted(best, key=lambda doc: (-best[doc], doc))


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = NDCG_K) -> float:
    """nDCG@k with linear gains (as pytrec_eval and BEIR): sum rel_i / log2(i + 1) over the ideal order's."""
    gains = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if ideal == 0:
        return 0.0
    dcg = sum(max(relevance.get(doc, 0), 0) / math.log2(i + 2) for i, doc in enumerate(unique(ranked)[:k]))
    return dcg / ideal


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = RECALL_K) -> float:
    """The share of the relevant documents (grade > 0) found in the top k."""
    relevant = {doc for doc, g in relevance.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(unique(ranked)[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = MRR_K) -> float:
    """1 / rank of the first relevant document in the top k, else 0."""
    for i, doc in enumerate(unique(ranked)[:k], start=1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / i
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class ModeResult:
    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    p50_ms: float
    p99_ms: float
    queries: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "ndcg@10": round(self.ndcg_at_10, 4),
            "recall@100": round(self.recall_at_100, 4),
            "mrr@10": round(self.mrr_at_10, 4),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "queries": self.queries,
        }


def score_run(
    mode: str,
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    latencies_ms: Sequence[float],
) -> ModeResult:
    """Mean metrics over the queries of `run` that have a relevant document; the others are not counted."""
    judged = [q for q in run if any(g > 0 for g in qrels.get(q, {}).values())]
    n = len(judged)

    def mean(metric: Callable[[Sequence[str], Mapping[str, int]], float]) -> float:
        return sum(metric(run[q], qrels[q]) for q in judged) / n if n else 0.0

    return ModeResult(
        mode=mode,
        ndcg_at_10=mean(ndcg_at_k),
        recall_at_100=mean(recall_at_k),
        mrr_at_10=mean(mrr_at_k),
        p50_ms=percentile(latencies_ms, 50),
        p99_ms=percentile(latencies_ms, 99),
        queries=n,
    )


# -- the corpus as product documents ---------------------------------------------------------------


def document_source(doc_id: str) -> str:
    """The document name a corpus entry is ingested under; `corpus_id` maps a search hit back."""
    return doc_id + SOURCE_SUFFIX


def corpus_id(source: str) -> str:
    return source.removesuffix(SOURCE_SUFFIX)


def document_bytes(doc: CorpusDoc) -> bytes:
    """A markdown document: the title as its H1 (the heading every chunk's embed text starts with)."""
    title = " ".join(doc.title.split())
    text = doc.text.strip()
    return (f"# {title}\n\n{text}\n" if title else f"{text}\n").encode()


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


# -- the run ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class IngestStats:
    documents: int = 0
    skipped: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embed_calls: int = 0

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "embedder": self.embedder,
            "sparse": self.sparse,
            "reranker": self.reranker,
            "fusion": self.fusion,
            "prefetch_limit": self.prefetch_limit,
            "ingest": self.ingest.to_dict(),
            "modes": {r.mode: r.to_dict() for r in self.results},
        }


def format_table(report: EvalReport) -> str:
    ing = report.ingest
    lines = [
        f"embedder {report.embedder}, sparse {report.sparse}, reranker {report.reranker}, "
        f"fusion {report.fusion}, prefetch_limit {report.prefetch_limit}",
        f"ingested {ing.documents} documents, {ing.chunks} chunks in {ing.seconds:.1f} s "
        f"({ing.chunks_per_second:.1f} chunks/s, {ing.embed_calls} embed calls)",
        "",
        f"{'mode':<8} {'nDCG@10':>8} {'Recall@100':>11} {'MRR@10':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'queries':>8}",
    ]
    for r in report.results:
        lines.append(
            f"{r.mode:<8} {r.ndcg_at_10:>8.4f} {r.recall_at_100:>11.4f} {r.mrr_at_10:>8.4f} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.queries:>8d}"
        )
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


def eval_settings(settings: Settings) -> Settings:
    """The deployment's settings (its store knobs too) with a scratch in-memory store and the sparse model on."""
    scratch = {"url": None, "api_key": None, "path": ":memory:", "collection": "eval"}
    return settings.model_copy(
        update={
            "qdrant": settings.qdrant.model_copy(update=scratch),
            "retrieval": settings.retrieval.model_copy(
                update={"mode": "auto" if settings.retrieval.mode == "dense" else settings.retrieval.mode}
            ),
        }
    )


@contextlib.asynccontextmanager
async def _scratch(
    settings: Settings, providers: Providers | None
) -> AsyncIterator[tuple[Providers, VectorStore]]:
    async with AsyncExitStack() as stack:
        if providers is None:
            providers = build_providers(settings, stack)
        warm_up = getattr(providers.embedder, "warm_up", None)
        if warm_up is not None:
            await warm_up()
        store = VectorStore(settings.qdrant)
        await store.open()
        stack.push_async_callback(store.aclose)
        await store.ensure_collection(providers.embedder.name, providers.embedder.dimensions, sparse=True)
        yield providers, store


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


class Retriever:
    """One query as the pipeline retrieves it: embed (dense and/or BM25), one VectorStore.search call."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        embedder: Embedder,
        sparse: SparseEmbedder | None,
        reranker: Reranker | None,
        *,
        depth: int = RECALL_K,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.sparse = sparse
        self.reranker = reranker
        self.depth = depth

    async def search(self, question: str, mode: EvalMode) -> list[Source]:
        retrieval = self.settings.retrieval
        store_mode: SearchMode = "hybrid" if mode == "rerank" else mode
        vectors = await embed_query(self.embedder, self.sparse, question, store_mode)  # as the pipeline does
        sources = await self.store.search(
            EVAL_TENANT,
            [vectors],
            mode=store_mode,
            limit=self.depth,
            prefetch_limit=retrieval.prefetch_limit,
            score_threshold=retrieval.score_threshold,
            fusion=retrieval.fusion,
        )
        if mode == "rerank" and self.reranker is not None and sources:
            head = sources[: retrieval.rerank_candidates]
            ranked = await self.reranker.rerank(question, [s.text for s in head], len(head))
            reordered = [head[r.index] for r in ranked]
            sources = reordered + [s for s in head if s not in reordered] + sources[len(head) :]
        return sources


async def run_evaluation(
    settings: Settings,
    data: BeirData,
    *,
    modes: str | None = None,
    limit_queries: int | None = None,
    providers: Providers | None = None,
    concurrency: int = 16,
    progress: bool = True,
) -> EvalReport:
    """Ingest `data.corpus` into a scratch collection, run the judged queries per mode, score them."""
    settings = eval_settings(settings)
    async with _scratch(settings, providers) as (providers, store):
        wanted = parse_modes(modes, rerank_available=providers.reranker is not None)
        if providers.sparse is None and any(m != "dense" for m in wanted):
            raise ConfigError("Modes sparse, hybrid and rerank need the BM25 sparse model.")
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
        retriever = Retriever(settings, store, providers.embedder, providers.sparse, providers.reranker)
        for mode in wanted:
            run: dict[str, list[str]] = {}
            latencies: list[float] = []
            for qid in tqdm(judged, unit="query", desc=mode, disable=not progress, file=sys.stderr):
                started = time.perf_counter()
                sources = await retriever.search(data.queries[qid], mode)
                latencies.append((time.perf_counter() - started) * 1000)
                run[qid] = (
                    unique(corpus_id(s.source) for s in sources)
                    if mode == "rerank"
                    else rank_by_score((corpus_id(s.source), s.score) for s in sources)
                )
            report.results.append(score_run(mode, run, data.qrels, latencies))
        return report


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
) -> EvalReport:
    """`python -m chatbot eval`: read the data set, evaluate, print a table or JSON."""
    data = await asyncio.to_thread(read_beir, corpus, queries, qrels)
    report = await run_evaluation(
        settings, data, modes=modes, limit_queries=limit_queries, providers=providers, progress=progress
    )
    text = json.dumps(report.to_dict(), indent=2) if as_json else format_table(report)
    print(text, file=out or sys.stdout, flush=True)
    return report
