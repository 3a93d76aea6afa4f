"""The extractive answer: citation hit rate on the paraphrased pairs, and its CPU per answer by scoring mode.

    PYTHONPATH=. .venv/bin/python bench/bench_extractive.py           # ~1 minute
    PYTHONPATH=. .venv/bin/python bench/bench_extractive.py --sweep   # also the W_DENSE / DENSE_ALONE grid

The user guide and the generated corpus (tests/fakes/documents.py) are ingested with the offline models
into an in-memory store; each question of tests/fixtures/answer_pairs.jsonl is retrieved once and its
sources grouped per document (rag/grouping.py). Then, over the same sources: the share of answers citing
the expected document (and the share whose first citation is it), and the CPU time per answer (all
threads: onnxruntime's included) of lexical scoring, of cold dense scoring (empty LRU; at most `budget`
new sentences per answer; the retriever's question vector reused) and of warm dense scoring (every
sentence cached). CPU time survives a loaded machine better than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import chatbot.providers.extractive.select as scoring
from bench.targets import Figure, Target, table
from chatbot.events import Source
from chatbot.ingest.service import Ingestor
from chatbot.providers.base import Passage
from chatbot.providers.extractive import compose_answer
from chatbot.providers.extractive.vectors import SentenceVectors
from chatbot.providers.local_models import BM25SparseEmbedder, LocalEmbedder, TermAnalyzer
from chatbot.rag.grouping import group_by_document
from chatbot.rag.retriever import Retriever
from chatbot.stores.factory import vector_store
from tests.conftest import GUIDE, make_settings
from tests.service.test_answer_pairs import CORPUS, cited_sources, load_pairs

HIT_RATE = Target(
    "extractive_citation_hit", "extractive: expected document cited (answer pairs)", "%", 90, False
)
WARM_CPU = Target(
    "extractive_warm_cpu_ms", "extractive: CPU per answer, sentence vectors cached", "ms", 5, True
)

Row = tuple[dict[str, str], list[Source], list[float] | None]


async def retrieve_all() -> tuple[list[Row], LocalEmbedder]:
    settings = make_settings()
    embedder, sparse = LocalEmbedder(settings.local), BM25SparseEmbedder()
    store = vector_store(settings.qdrant)
    await store.open()
    await store.ensure_collection(embedder.name, embedder.dimensions, sparse=True)
    ingestor = Ingestor(embedder=embedder, sparse=sparse, store=store)
    await ingestor.ingest_paths("bench", [GUIDE], root=GUIDE)
    for name, make in CORPUS.items():
        await ingestor.ingest_bytes("bench", name, make())
    retriever = Retriever(
        store=store,
        embedder=embedder,
        sparse=sparse,
        reranker=None,
        settings=settings.retrieval,
        deadlines=settings.deadlines,
    )
    rows: list[Row] = []
    for pair in load_pairs():
        vectors = await retriever.embed(pair["question"])
        hits = await retriever.retrieve("bench", [vectors], pair["question"], {})
        dense = list(vectors.dense) if vectors.dense is not None else None
        rows.append((pair, group_by_document(hits), dense))
    await store.aclose()
    return rows, embedder


async def score(rows: Sequence[Row], vectors: SentenceVectors | None) -> tuple[int, int, float]:
    """(answers citing the expected document, answers whose first citation is it, CPU ms per answer)."""
    analyzer = TermAnalyzer()
    hits = first = 0
    started = time.process_time()
    for pair, sources, query_vector in rows:
        passages = [Passage(n=s.n, text=s.text, title=s.title) for s in sources]
        found = scoring.find_candidates(passages, analyzer)
        dense = None
        if vectors is not None and found.sentences:
            texts = [c.span.text for c in found.sentences]
            dense = await vectors.lookup(pair["question"], texts, query_vector)
        picks = scoring.select(pair["question"], found, 4, analyzer, dense)
        cited = cited_sources(compose_answer(picks), {s.n: s.source for s in sources})
        hits += pair["expected_source"] in cited
        first += bool(cited) and cited[0] == pair["expected_source"]
    return hits, first, (time.process_time() - started) * 1000 / len(rows)


async def main(sweep: bool, budget: int) -> None:
    rows, embedder = await retrieve_all()
    await embedder.warm_up()
    total = len(rows)
    retrieved = sum(any(s.source == p["expected_source"] for s in sources) for p, sources, _ in rows)
    print(f"{total} pairs; the expected document is among the sources for {retrieved}")
    print(f"{'scoring':40} {'cited':>7} {'first':>7} {'CPU ms/answer':>14}")
    lexical = await score(rows, None)
    vectors = SentenceVectors(embedder, budget=budget)
    cold = await score(rows, vectors)
    await score(rows, vectors)  # answers with more than `budget` new sentences finish filling the LRU
    warm = await score(rows, vectors)
    for label, (hit, first, ms) in (
        ("lexical only", lexical),
        (f"lexical + dense, cold LRU (budget {budget})", cold),
        ("lexical + dense, warm LRU", warm),
    ):
        print(f"{label:40} {hit:>7} {first:>7} {ms:>14.2f}")
    if sweep:
        everything = SentenceVectors(embedder, budget=10**6)
        for w_dense in (0.2, 0.35, 0.5, 0.65, 0.8):
            for alone in (0.4, 0.5, 0.6):
                scoring.W_LEXICAL, scoring.W_DENSE, scoring.DENSE_ALONE = 1 - w_dense, w_dense, alone
                hit, first, _ = await score(rows, everything)
                print(f"W_DENSE {w_dense:<5} DENSE_ALONE {alone:<5} {'':17} {hit:>7} {first:>7}")
    embedder.close()
    print()
    print(table([Figure(HIT_RATE, 100 * warm[0] / total), Figure(WARM_CPU, warm[2])]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", action="store_true", help="also score the weight grid")
    parser.add_argument("--budget", type=int, default=16, help="new sentences embedded per answer")
    args = parser.parse_args()
    asyncio.run(main(args.sweep, args.budget))
