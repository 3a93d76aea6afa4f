"""Micro-benchmarks: offline ingestion throughput, and retrieval latency by collection size in local mode
with the serving loop's lag measured while searching. Prints lines for people and one JSON line last.

    python -m bench.micro [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.bench_embed import run as bench_embed_run
from bench.corpus import documents, questions
from chatbot.ingest.chunking import chunk_document
from chatbot.ingest.loaders import load_document
from chatbot.ingest.service import Ingestor
from chatbot.ops.looplag import LoopLagMonitor
from chatbot.providers.local_models import BM25SparseEmbedder, LocalEmbedder
from chatbot.settings import LocalModelSettings, QdrantSettings
from chatbot.stores.base import ChunkRecord, QueryVectors
from chatbot.stores.factory import vector_store

TENANT = "public"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


async def ingestion(target_chunks: int, threads: int) -> dict[str, Any]:
    """The product's Ingestor with the offline embedder (+ BM25) into an in-memory local-mode store."""
    embedder = LocalEmbedder(LocalModelSettings(threads=threads))
    await embedder.warm_up()
    store = vector_store(QdrantSettings(path=":memory:", collection="ingest"))
    await store.open()
    monitor = LoopLagMonitor(interval=0.01, threshold=10.0, watchdog=False)
    try:
        await store.ensure_collection(embedder.name, embedder.dimensions, sparse=True)
        ingestor = Ingestor(embedder=embedder, sparse=BM25SparseEmbedder(), store=store, batch_size=64)
        docs = documents(max(1, target_chunks // 64 + 1), sections=63, seed=23)
        await monitor.start()
        chunks = 0
        started = time.perf_counter()
        for name, data in docs:
            if chunks >= target_chunks:
                break
            chunks += (await ingestor.ingest_bytes(TENANT, name, data)).written
        seconds = time.perf_counter() - started
        lag = monitor.snapshot()
    finally:
        await monitor.stop()
        await store.aclose()
        await embedder.aclose()
    rate = chunks / seconds
    print(
        f"ingestion (offline embedder, threads={threads}): {chunks} chunks in {seconds:.1f} s "
        f"= {rate:.0f} chunks/s; "
        f"loop lag max {lag['max_ms']} ms",
        flush=True,
    )
    return {
        "threads": threads,
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(rate, 1),
        "loop_lag_max_ms": lag["max_ms"],
        "loop_lag_p99_ms": lag["p99_ms"],
    }


def chunk_texts(n: int) -> list[tuple[str, tuple[str, ...]]]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, data in documents(n // 60 + 2, sections=63, seed=31):
        out += [
            (c.text, c.heading_path) for c in chunk_document(load_document(name, data, max_bytes=1 << 26))
        ]
        if len(out) >= n:
            break
    return out[:n]


async def retrieval(size: int, queries: int, hybrid: bool) -> dict[str, Any]:
    """Search latency (p50/p99), CPU per search and the serving loop's lag while searching `size` points."""
    rng = np.random.default_rng(size)
    store = vector_store(QdrantSettings(path=":memory:", collection=f"r{size}"))
    await store.open()
    monitor = LoopLagMonitor(interval=0.002, threshold=10.0, watchdog=False)
    try:
        await store.ensure_collection("bench/random-384", 384, sparse=hybrid)
        texts = chunk_texts(size)
        bm25 = BM25SparseEmbedder() if hybrid else None
        for start in range(0, size, 1000):
            part = texts[start : start + 1000]
            records = [
                ChunkRecord(
                    TENANT, "doc", f"s{start // 1000}.md", "t", heading, start + i, text, f"h{start + i}", "v"
                )
                for i, (text, heading) in enumerate(part)
            ]
            vectors = rng.standard_normal((len(part), 384), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            sparse = bm25.vectors([t for t, _ in part], "document") if bm25 else None
            await store.upsert(records, vectors.tolist(), sparse)
        qs = questions(queries, seed=3)
        qvec = rng.standard_normal((queries, 384), dtype=np.float32)
        mode = "hybrid" if hybrid else "dense"
        await store.search(TENANT, [QueryVectors(dense=qvec[0].tolist())], mode=mode, limit=5)  # warm
        await monitor.start()
        await asyncio.sleep(0.02)
        monitor.reset()
        latencies = []
        cpu0 = time.process_time()
        for i in range(queries):
            sparse_q = bm25.query_vector(qs[i]) if bm25 else None
            t = time.perf_counter()
            hits = await store.search(
                TENANT, [QueryVectors(dense=qvec[i].tolist(), sparse=sparse_q)], mode=mode, limit=5
            )
            latencies.append((time.perf_counter() - t) * 1000)
            assert hits
        cpu = (time.process_time() - cpu0) * 1000 / queries
        lag = monitor.snapshot()
    finally:
        await monitor.stop()
        await store.aclose()
    row = {
        "points": size,
        "mode": mode,
        "queries": queries,
        "p50_ms": round(pct(latencies, 0.5), 2),
        "p99_ms": round(pct(latencies, 0.99), 2),
        "cpu_ms_per_search": round(cpu, 2),
        "loop_lag_max_ms": lag["max_ms"],
        "loop_lag_p99_ms": lag["p99_ms"],
    }
    print(
        f"retrieval {mode:6} {size:>6} points: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
        f"cpu {row['cpu_ms_per_search']} ms/search; serving loop lag max {lag['max_ms']} ms",
        flush=True,
    )
    return row


async def main_async(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    embed_rows = await bench_embed_run(
        threads=(1, 2),
        batch_sizes=(64,),
        corpora=("chunks",),
        seconds=2.0 if quick else 5.0,
        compare_sorting=False,
    )
    out["embedder"] = [r.__dict__ for r in embed_rows]
    # 2 inference threads, as `python -m chatbot ingest` uses on 2 cores
    out["ingestion"] = [await ingestion(500 if quick else 2000, 2)]
    sizes = (1000, 10_000) if quick else (1000, 10_000, 50_000)
    out["retrieval"] = [await retrieval(n, 30 if quick or n > 10_000 else 100, hybrid=False) for n in sizes]
    out["retrieval"] += [await retrieval(n, 5 if quick else 20, hybrid=True) for n in (1000, 10_000)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.quick))), flush=True)


if __name__ == "__main__":
    main()
