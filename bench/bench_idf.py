"""What per-tenant BM25 statistics cost (issue 14 item 4): upsert rate and query p50/p99 at 10k chunks.

    PYTHONPATH=$PWD python -m bench.bench_idf                 # this checkout; prints one JSON line per store
    PYTHONPATH=/path/to/other/checkout python bench/bench_idf.py   # the same figures for another version

Synthetic chunks (Zipf-distributed words, real BM25 vectors from BM25SparseEmbedder, random 384-d dense
vectors) spread over tenants: one large tenant holds half of them, the rest share the remainder. Queries of
four words run for the large tenant, sparse and hybrid. Two stores:
- mirror:      local mode with the in-memory mirror (the default for local deployments).
- server-path: QdrantStore against qdrant-client's local mode: the requests a Qdrant server receives (with
               per-tenant IDF, one count per query term), but scored by local mode's Python loops, so its
               absolute figures say nothing about a real server; compare versions, not deployments.
Only APIs present before and after the change are used, so the same file measures both versions.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import time
from typing import Any

from chatbot.providers.local_models import BM25SparseEmbedder
from chatbot.settings import QdrantSettings
from chatbot.stores.base import ChunkRecord, QueryVectors, SearchMode
from chatbot.stores.factory import vector_store

DIMS = 384
VOCABULARY = [f"term{i}x" for i in range(20_000)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCABULARY))]


def chunks(n: int, tenants: int, seed: int = 1) -> list[tuple[ChunkRecord, str]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        tenant = "big" if i % 2 == 0 else f"t{i % (2 * tenants) // 2}"
        text = " ".join(rnd.choices(VOCABULARY, WEIGHTS, k=120))
        digest = hashlib.sha256(text.encode()).hexdigest()
        doc = f"doc{i // 8}"
        out.append((ChunkRecord(tenant, doc, f"{doc}.md", doc, ("h",), i % 8, text, digest, "v1"), text))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def measure(kind: str, n: int, tenants: int, queries: int, batch: int) -> dict[str, Any]:
    bm25 = BM25SparseEmbedder()
    rnd = random.Random(2)
    data = chunks(n, tenants)
    dense = [[rnd.gauss(0, 1) for _ in range(DIMS)] for _ in data]
    sparse = bm25.vectors([text for _, text in data], "document")
    settings = QdrantSettings(
        path=":memory:", collection="idf", memory_index=kind == "mirror", engine="qdrant-local"
    )
    store = vector_store(settings)
    await store.open()
    result: dict[str, Any] = {"store": kind, "chunks": n, "tenants": tenants + 1}
    try:
        await store.ensure_collection("bench/model", DIMS, sparse=True)
        started = time.perf_counter()
        for at in range(0, n, batch):
            part = slice(at, at + batch)
            await store.upsert([r for r, _ in data[part]], dense[part], sparse[part])
        result["upsert_chunks_per_s"] = round(n / (time.perf_counter() - started), 1)
        asked = [" ".join(rnd.choices(VOCABULARY[50:2000], k=4)) for _ in range(queries)]
        mode: SearchMode
        for mode in ("sparse", "hybrid"):
            times = []
            for text in asked:
                q = QueryVectors(dense=[rnd.gauss(0, 1) for _ in range(DIMS)], sparse=bm25.query_vector(text))
                started = time.perf_counter()
                await store.search("big", [q], mode=mode, limit=10, prefetch_limit=40)
                times.append((time.perf_counter() - started) * 1000)
            result[f"{mode}_p50_ms"] = percentile(times, 0.5)
            result[f"{mode}_p99_ms"] = percentile(times, 0.99)
    finally:
        await store.aclose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=20, help="small tenants besides the large one")
    parser.add_argument("--queries", type=int, default=200, help="per mode, mirror store")
    parser.add_argument("--server-queries", type=int, default=20, help="per mode, server-path store (slow)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--stores", default="mirror,server-path")
    args = parser.parse_args()
    for kind in args.stores.split(","):
        queries = args.queries if kind == "mirror" else args.server_queries
        print(
            json.dumps(asyncio.run(measure(kind, args.chunks, args.tenants, queries, args.batch))), flush=True
        )


if __name__ == "__main__":
    main()
