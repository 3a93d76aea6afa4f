"""Metadata-filtered search cost in local mode: the in-memory mirror with and without a filter (its Python
predicate runs once per point of the tenant), and qdrant-client's local mode with the same filter.
Prints lines for people and one JSON line last.

    python -m bench.filters [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from chatbot.settings import QdrantSettings
from chatbot.stores.base import ChunkRecord, MetadataFilter, QueryVectors
from chatbot.stores.factory import vector_store

DIMS = 384
FILTER = MetadataFilter.model_validate({"tags": {"any": ["hr"]}, "year": {"gte": 2020}})  # ~10% of points


def corpus(size: int) -> tuple[list[ChunkRecord], list[list[float]]]:
    rnd = random.Random(5)
    tags = ("hr", "legal", "it", "ops", "sales")
    records, dense = [], []
    for i in range(size):
        meta = {
            "tags": rnd.sample(tags, 2),
            "year": rnd.randint(2010, 2025),
            "lang": rnd.choice(("en", "de")),
        }
        records.append(
            ChunkRecord(
                "t", f"d{i // 10}", f"d{i // 10}.md", "T", (), i % 10, "x", f"h{i}", "v", metadata=meta
            )
        )
        dense.append([rnd.gauss(0, 1) for _ in range(DIMS)])
    return records, dense


def cold(i: int) -> MetadataFilter:
    """A filter not seen before (the mirror caches a filter's mask until the tenant changes)."""
    return MetadataFilter.model_validate({"tags": {"any": ["hr"]}, "year": {"gte": 2020 - i * 1e-6}})


async def timed(store: Any, queries: list[QueryVectors], where: Any) -> tuple[float, int]:
    """Mean ms per query; `where`: None, a filter, or a function of the query's index giving one."""
    started = time.perf_counter()
    hits = 0
    for i, q in enumerate(queries):
        flt = where(i) if callable(where) else where
        hits += len(await store.search("t", [q], mode="dense", limit=10, where=flt))
    return (time.perf_counter() - started) * 1000 / len(queries), hits // len(queries)


async def run(size: int, n_queries: int, with_qdrant: bool) -> dict[str, Any]:
    records, dense = corpus(size)
    rnd = random.Random(9)
    queries = [QueryVectors(dense=[rnd.gauss(0, 1) for _ in range(DIMS)]) for _ in range(n_queries)]
    out: dict[str, Any] = {"points": size}
    for mirror in (True, False) if with_qdrant else (True,):
        settings = QdrantSettings(path=":memory:", collection="b", memory_index=mirror, engine="qdrant-local")
        store = vector_store(settings)
        await store.open()
        await store.ensure_collection("bench", DIMS, sparse=False)
        for start in range(0, size, 2000):
            await store.upsert(records[start : start + 2000], dense[start : start + 2000], None)
        name = "mirror" if mirror else "qdrant_local"
        plain, _ = await timed(store, queries, None)
        first, _ = await timed(store, queries, cold)
        again, hits = await timed(store, queries, FILTER)
        out[name] = {
            "unfiltered_ms": round(plain, 2),
            "new_filter_ms": round(first, 2),
            "same_filter_ms": round(again, 2),
            "hits": hits,
        }
        print(
            f"{size:>7} points  {name:<12}  unfiltered {plain:7.2f} ms   new filter {first:7.2f} ms   "
            f"same filter {again:7.2f} ms  ({hits} hits)"
        )
        await store.aclose()
    return out


async def main_async(quick: bool) -> list[dict[str, Any]]:
    sizes = (2_000, 10_000) if quick else (10_000, 50_000)
    return [await run(size, 10 if quick else 30, with_qdrant=size <= 10_000) for size in sizes]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    results = asyncio.run(main_async(parser.parse_args().quick))
    print(json.dumps({"filters": results}))


if __name__ == "__main__":
    main()
