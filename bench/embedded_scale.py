"""Embedded mode at scale (issue 15 target 4): ingest N chunks (synthetic 384-d vectors, BM25-like sparse
vectors, ~600-character texts, tenant / doc / metadata payloads) into a local path through the VectorStore
protocol, then in a fresh process open the store, time it until it answers, and measure RSS, the filtered
hybrid query (tenant + metadata filter, dense + BM25 fused by RRF) p50/p99, the CPU per query, and how much
of the GIL the engine leaves to other Python threads while it searches. The upsert rate is the store side of
ingestion (what it costs when the embeddings come from an API): vectors are made before the clock starts.

    python -m bench.embedded_scale [--quick] [--engine edge|qdrant-local ...] [--chunks N]

The engines asked for are measured in the same run, one after the other. Human lines first, then one JSON line with
"figures" (bench/targets.py) per engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.targets import Figure, Target, table
from chatbot.providers.base import SparseVector
from chatbot.settings import QdrantSettings
from chatbot.stores.base import ChunkRecord, MetadataFilter, QueryVectors, VectorStore
from chatbot.stores.factory import vector_store

DIMS = 384
VOCAB = 30_000  # BM25 term ids (hashed words): Zipf-distributed, like words
BATCH = 256  # chunks per upsert call (QdrantSettings.upsert_batch's default)
TENANTS = 8  # "t0" holds half the chunks (the tenant queried), seven others share the rest
TAGS = ("hr", "legal", "it", "ops", "sales")
WHERE = MetadataFilter.model_validate({"tags": {"any": ["hr"]}})  # ~40% of a tenant's chunks
WORDS = [f"w{i:04d}x" for i in range(4000)]
ENGINES = ("qdrant-local", "edge")

STARTUP = Target("embedded_startup_s", "embedded: start-up until the first answer", "s", 10, at_most=True)
RSS = Target("embedded_rss_mb", "embedded: RSS after open + queries", "MB", 1536, at_most=True)
P99 = Target("embedded_hybrid_p99_ms", "embedded: filtered hybrid query p99", "ms", 20, at_most=True)
UPSERT = Target("embedded_upserts_per_s", "embedded: upserts (store side of API ingestion)", "chunks/s",
                2000, at_most=False)  # fmt: skip


def settings(engine: str, path: str) -> QdrantSettings:
    return QdrantSettings(path=path, collection="scale", engine=engine)  # type: ignore[arg-type]


def batch(start: int, size: int) -> tuple[list[ChunkRecord], list[list[float]], list[SparseVector]]:
    """Chunks start .. start+size, the same for every engine (seeded by position)."""
    rnd = np.random.default_rng(start)
    dense = rnd.standard_normal((size, DIMS), dtype=np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    records, sparse = [], []
    for k in range(size):
        i = start + k
        tenant = "t0" if i % 2 == 0 else f"t{1 + (i // 2) % (TENANTS - 1)}"
        terms = np.unique(np.minimum(rnd.zipf(1.2, 70), VOCAB) - 1)[:60]
        sparse.append(SparseVector(terms.tolist(), np.round(rnd.uniform(0.3, 1.8, len(terms)), 3).tolist()))
        text = " ".join(WORDS[w] for w in rnd.integers(0, len(WORDS), 86))[:600]
        meta = {"tags": [TAGS[j] for j in sorted(set(rnd.integers(0, 5, 2).tolist()))],
                "year": int(rnd.integers(2010, 2026)), "lang": "en" if k % 3 else "de"}  # fmt: skip
        doc = i // 20
        records.append(ChunkRecord(tenant, f"doc{doc}", f"docs/doc{doc}.md", f"Document {doc}", ("Part", "Sec"),
                                   i % 20, text, f"h{i}", "v1", char_start=0, char_end=600, metadata=meta))  # fmt: skip
    return records, dense.tolist(), sparse


def queries(n: int) -> list[QueryVectors]:
    rnd = np.random.default_rng(99)
    out = []
    for _ in range(n):
        q = rnd.standard_normal(DIMS, dtype=np.float32)
        terms = sorted(set((np.minimum(rnd.zipf(1.2, 6), VOCAB) - 1).tolist()))
        out.append(
            QueryVectors(
                dense=(q / np.linalg.norm(q)).tolist(), sparse=SparseVector(terms, [1.0] * len(terms))
            )
        )
    return out


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def ingest(engine: str, path: str, chunks: int) -> dict[str, Any]:
    store = vector_store(settings(engine, path))
    await store.open()
    await store.ensure_collection("bench/synthetic-384", DIMS, sparse=True)
    wall = spent = 0.0
    for start in range(0, chunks, BATCH):
        records, dense, sparse = batch(start, min(BATCH, chunks - start))
        t0, c0 = time.perf_counter(), cpu()
        await store.upsert(records, dense, sparse)
        wall += time.perf_counter() - t0
        spent += cpu() - c0
    # a running server has answered filtered questions before it restarts: its payload indexes exist
    await store.search("t0", queries(1), mode="hybrid", limit=8, where=WHERE)
    t0 = time.perf_counter()
    await store.aclose()
    closing = time.perf_counter() - t0
    return {"upserts_per_s": chunks / (wall + closing), "upsert_cpu_ms_per_chunk": spent * 1000 / chunks,
            "close_s": closing, "ingest_peak_rss_mb": rss_mb()[1]}  # fmt: skip


async def serve(engine: str, path: str, n_queries: int) -> dict[str, Any]:
    probes = queries(n_queries + 20)
    t0 = time.perf_counter()
    store = vector_store(settings(engine, path))
    await store.open()
    await store.ensure_collection("bench/synthetic-384", DIMS, sparse=True)
    first = await store.search("t0", [probes[0]], mode="hybrid", limit=8, where=WHERE)
    startup = time.perf_counter() - t0
    assert first, "the first query found nothing"
    for q in probes[1:20]:  # warm-up
        await store.search("t0", [q], mode="hybrid", limit=8, where=WHERE)
    lat, c0 = [], cpu()
    for q in probes[20:]:
        s = time.perf_counter()
        await store.search("t0", [q], mode="hybrid", limit=8, where=WHERE)
        lat.append((time.perf_counter() - s) * 1000)
    cpu_ms = (cpu() - c0) * 1000 / n_queries
    gil = await gil_left(store, probes[20:])
    current, peak = rss_mb()
    count = await store.count("t0")
    await store.aclose()
    return {"startup_s": startup, "rss_mb": current, "peak_rss_mb": peak, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "cpu_ms_per_query": cpu_ms, "gil_left": gil,
            "tenant_chunks": count}  # fmt: skip


async def gil_left(store: VectorStore, probes: list[QueryVectors], seconds: float = 1.0) -> float:
    """How much a Python thread still runs while searches run back to back: its loop rate next to the rate it
    has alone (1.0: searching never holds the GIL; ~0.5: it holds it as much as a Python thread would)."""

    def spin(stop: threading.Event, out: list[int]) -> None:
        n = 0
        while not stop.is_set():
            n += 1
        out.append(n)

    async def rate(busy: bool) -> float:
        stop, out = threading.Event(), []  # type: ignore[var-annotated]
        thread = threading.Thread(target=spin, args=(stop, out))
        started = time.perf_counter()
        thread.start()
        i = 0
        while time.perf_counter() - started < seconds:
            if busy:
                await store.search("t0", [probes[i % len(probes)]], mode="hybrid", limit=8, where=WHERE)
                i += 1
            else:
                await asyncio.sleep(0.01)
        stop.set()
        thread.join()
        return out[0] / (time.perf_counter() - started)

    alone = await rate(False)
    return round(await rate(True) / alone, 2)


def child(args: argparse.Namespace) -> None:
    engine = args.engine[0]
    job = (
        ingest(engine, args.path, args.chunks)
        if args.child == "ingest"
        else serve(engine, args.path, args.queries)
    )
    print(json.dumps(asyncio.run(job)))


def run_child(kind: str, engine: str, path: str, chunks: int, n_queries: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.embedded_scale", "--child", kind, "--engine", engine, "--path", path,
           "--chunks", str(chunks), "--queries", str(n_queries)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - our own module
    if out.returncode != 0:
        raise RuntimeError(f"{kind} ({engine}) failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def figures(engine: str, m: dict[str, Any], chunks: int) -> list[Figure]:
    note = f"{engine}, {chunks:,} chunks"
    return [Figure(STARTUP, round(m["startup_s"], 2), note), Figure(RSS, round(m["rss_mb"]), note),
            Figure(P99, round(m["p99_ms"], 2), note), Figure(UPSERT, round(m["upserts_per_s"]), note)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="5,000 chunks, 200 queries, both engines (not the target scale)"
    )
    parser.add_argument(
        "--engine",
        action="append",
        choices=ENGINES,
        help="engine(s) to measure (default: edge at 100k; both engines with --quick)",
    )
    parser.add_argument("--chunks", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--child", choices=("ingest", "serve"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    chunks = args.chunks or (5_000 if args.quick else 100_000)
    n_queries = args.queries or (200 if args.quick else 1000)
    # qdrant-client's local mode needs over half an hour for 100k chunks here (its upserts slow as it fills):
    # the full run measures the default engine, --quick compares both at 5k
    engines = args.engine or (list(ENGINES) if args.quick else ["edge"])
    if args.quick:
        print(f"quick mode: {chunks:,} chunks (the targets are for 100,000)")
    results: dict[str, Any] = {"chunks": chunks, "queries": n_queries, "quick": args.quick, "engines": {}}
    all_figures: list[Figure] = []
    for engine in engines:
        with tempfile.TemporaryDirectory(prefix="embedded-scale-") as tmp:
            path = str(Path(tmp) / "store")
            t0 = time.perf_counter()
            m = run_child("ingest", engine, path, chunks, n_queries)
            print(f"{engine}: ingested {chunks:,} chunks in {time.perf_counter() - t0:.1f} s")
            m |= run_child("serve", engine, path, chunks, n_queries)
        results["engines"][engine] = m
        print(
            f"{engine}: "
            + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
        )
        all_figures += figures(engine, m, chunks)
    print(table(all_figures))
    results["figures"] = [f.to_dict() for f in all_figures]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
