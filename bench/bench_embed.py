"""Throughput of the offline embedder (LocalEmbedder) and the BM25 sparse embedder.

    .venv/bin/python bench/bench_embed.py                       # threads 1 and 2, a few batch sizes
    .venv/bin/python bench/bench_embed.py --threads 2 --batch-sizes 8 --seconds 5 --json

Measures the real path (LocalEmbedder.embed: worker thread, batching, length sorting) on three corpora
built here from a fixed seed: sentences (~40-120 chars), chunks (~800 chars, as ingestion makes them) and
mixed (100-800 chars, where length sorting matters). `run()` returns the rows for a larger bench suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from chatbot.providers.local_models import BM25SparseEmbedder, LocalEmbedder
from chatbot.settings import LocalModelSettings

_SENTENCES = [
    "The websocket endpoint streams tokens to the browser as the model writes them.",
    "Every frame of an answer carries a message id and a sequence number.",
    "A client that lost its connection sends resume with the last sequence number it saw.",
    "Stop cancels the answer task, which closes the upstream HTTP response.",
    "Documents are split into chunks of about eight hundred characters along headings.",
    "Each chunk is embedded and stored in Qdrant with its tenant, source and title.",
    "Hybrid search fuses dense and sparse hits with reciprocal rank fusion.",
    "The extractive model quotes the most relevant sentences when no language model is configured.",
    "Rate limits apply per API key and per widget token.",
    "The server refuses a second question on a connection while an answer is running.",
    "Uploads accept markdown, HTML, PDF and plain text files up to twenty megabytes.",
    "Conversations keep the last twenty messages and are dropped oldest first.",
    "Set CHATBOT_QDRANT__URL to use a Qdrant server instead of the embedded store.",
    "Health checks report whether the vector store and the model providers are reachable.",
    "Prometheus metrics count answers, tokens, errors and time to first token.",
    "A deadline per stage turns a slow provider into a clear timeout error.",
]


def corpus(kind: str, n: int, seed: int = 7) -> list[str]:
    """n texts of one kind: 'sentences', 'chunks' (~800 chars) or 'mixed' (100-800 chars)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        if kind == "sentences":
            texts.append(rng.choice(_SENTENCES))
            continue
        target = 800 if kind == "chunks" else rng.randint(100, 800)
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < target:
            parts.append(rng.choice(_SENTENCES))
        texts.append(" ".join(parts)[:target])
    return texts


@dataclass
class Row:
    corpus: str
    threads: int
    batch_size: int
    sorted: bool
    texts_per_s: float


async def measure(embedder: LocalEmbedder, texts: Sequence[str], seconds: float) -> float:
    """Texts per second through embed(), repeated until `seconds` have passed."""
    await embedder.embed(texts[:8], "document")
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await embedder.embed(texts, "document")
        done += len(texts)
    return done / elapsed


async def run(
    threads: Sequence[int] = (1, 2),
    batch_sizes: Sequence[int] = (1, 4, 8, 16, 64),
    corpora: Sequence[str] = ("sentences", "chunks", "mixed"),
    seconds: float = 3.0,
    n: int = 128,
    compare_sorting: bool = True,
) -> list[Row]:
    rows: list[Row] = []
    for thread_count in threads:
        for batch_size in batch_sizes:
            for sort in (True, False) if compare_sorting else (True,):
                settings = LocalModelSettings(threads=thread_count, batch_size=batch_size)
                embedder = LocalEmbedder(settings, sort_by_length=sort)
                await embedder.warm_up()
                try:
                    for name in corpora:
                        if not sort and name != "mixed":
                            continue  # same-length texts: sorting changes nothing
                        rate = await measure(embedder, corpus(name, n), seconds)
                        rows.append(Row(name, thread_count, batch_size, sort, round(rate, 1)))
                        print(
                            f"{name:9} threads={thread_count} batch={batch_size:<3} sorted={sort!s:5} "
                            f"{rate:8.1f} texts/s",
                            flush=True,
                        )
                finally:
                    await embedder.aclose()
    return rows


def bench_bm25(n: int = 2000) -> dict[str, float]:
    """Documents and queries per second of the BM25 sparse embedder (pure Python + Rust stemmer)."""
    bm25 = BM25SparseEmbedder()
    chunks = corpus("chunks", n)
    start = time.perf_counter()
    bm25.vectors(chunks, "document")
    docs = n / (time.perf_counter() - start)
    queries = corpus("sentences", n)
    start = time.perf_counter()
    bm25.vectors(queries, "query")
    qps = n / (time.perf_counter() - start)
    print(f"bm25      documents {docs:8.0f} chunks/s   queries {qps:8.0f} /s", flush=True)
    return {"bm25_chunks_per_s": round(docs), "bm25_queries_per_s": round(qps)}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 64])
    parser.add_argument("--corpora", nargs="+", default=["sentences", "chunks", "mixed"])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--texts", type=int, default=128, help="texts per embed() call")
    parser.add_argument("--no-sort-compare", action="store_true", help="skip the unsorted runs")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON at the end")
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()}", flush=True)
    rows = asyncio.run(
        run(args.threads, args.batch_sizes, args.corpora, args.seconds, args.texts, not args.no_sort_compare)
    )
    extra = bench_bm25()
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], **extra}, indent=2))


if __name__ == "__main__":
    main()
