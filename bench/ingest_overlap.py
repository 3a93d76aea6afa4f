"""Offline ingestion against the embedding model's own throughput on the same chunks (issue 15, target 5).

    python -m bench.ingest_overlap [--quick]     # last stdout line: JSON with "figures"

The corpus: bench.corpus markdown documents written to a folder. "Model": LocalEmbedder.embed on the chunk
texts the product's parser makes of those files, in ingestion batches (local.batch_size), nothing else.
"Ingestion": Ingestor.ingest_paths on the folder end to end (read, parse, chunk, diff against the store,
embed, BM25, upsert into a local-mode store on tmpfs), a fresh tenant per round so every chunk is written.
Rounds alternate (model, ingestion, model, ingestion) and each side keeps its best round: the machine is
shared, and the best round is the least disturbed. Both use the same embedder with the inference threads
`python -m chatbot ingest` uses (min(2, cores)). CPU seconds of this process per chunk are printed too, and the
pipeline's rate with an instant embedder: its ceiling, what a faster model could reach at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procs
from bench.corpus import documents
from bench.targets import Figure, Target, table
from chatbot.ingest.parsing import ParserPool, parse_and_chunk
from chatbot.ingest.service import Ingestor
from chatbot.providers.base import EmbedKind
from chatbot.providers.local_models import BM25SparseEmbedder, LocalEmbedder
from chatbot.settings import LocalModelSettings, QdrantSettings
from chatbot.stores.factory import vector_store

RATIO = Target("ingest_overlap_ratio", "offline ingestion / model throughput, same chunks", "x", 0.90, False)
INGEST_RATE = Target(
    "ingest_offline_chunks_per_s", "offline ingestion (Ingestor end to end)", "chunks/s", 46, False
)
MODEL_RATE = Target(
    "ingest_model_chunks_per_s", "embedding model alone, ingestion batches", "chunks/s", 46, False
)
MAX_BYTES = 20 * 1024 * 1024


class InstantEmbedder:
    """The local model's vector space at no cost: what the rest of the pipeline can take (its ceiling)."""

    def __init__(self, like: LocalEmbedder) -> None:
        self.name, self.dimensions, self.distance = like.name, like.dimensions, like.distance
        self.vector = [1.0 / like.dimensions**0.5] * like.dimensions

    async def embed(
        self,
        texts: Sequence[str],
        kind: EmbedKind,  # noqa: ARG002 - the Embedder protocol's signature
    ) -> list[list[float]]:
        return [self.vector] * len(texts)


async def model_round(embedder: LocalEmbedder, texts: list[str], batch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to embed `texts` in batches of `batch`, one call after another."""
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(texts), batch):
        await embedder.embed(texts[start : start + batch], "document")
    return time.perf_counter() - wall, time.process_time() - cpu


async def ingest_round(ingestor: Ingestor, folder: Path, tenant: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, chunks written) of ingest_paths on the folder for a new tenant."""
    wall, cpu = time.perf_counter(), time.process_time()
    report = await ingestor.ingest_paths(tenant, [folder], root=folder)
    assert not report.skipped, report.skipped
    return time.perf_counter() - wall, time.process_time() - cpu, sum(d.written for d in report.documents)


async def main_async(quick: bool) -> dict[str, Any]:
    settings = LocalModelSettings(threads=min(2, os.cpu_count() or 1))
    docs = documents(12 if quick else 60, sections=12, seed=29)
    run_dir = Path(tempfile.mkdtemp(prefix="chatbot-bench-ingest-", dir=procs.fast_tmp()))
    folder = run_dir / "docs"
    folder.mkdir()
    for name, data in docs:
        (folder / name).write_bytes(data)
    limits = ParserPool().limits  # the Ingestor's own parsing limits
    texts = [
        c.embed_text for name, data in docs for c in parse_and_chunk(name, data, limits, MAX_BYTES).chunks
    ]
    embedder = LocalEmbedder(settings)
    await embedder.warm_up()
    store = vector_store(QdrantSettings(path=str(run_dir / "qdrant"), collection="ingest"))
    await store.open()
    model: list[tuple[float, float]] = []
    ingest: list[tuple[float, float, int]] = []
    try:
        await store.ensure_collection(embedder.name, embedder.dimensions, sparse=True)
        ingestor = Ingestor(
            embedder=embedder,
            sparse=BM25SparseEmbedder(),
            store=store,
            batch_size=settings.batch_size,
            max_bytes=MAX_BYTES,
        )
        await model_round(embedder, texts[: settings.batch_size], settings.batch_size)  # warm
        for n in range(2 if quick else 3):
            model.append(await model_round(embedder, texts, settings.batch_size))
            ingest.append(await ingest_round(ingestor, folder, f"round-{n}"))
            assert ingest[-1][2] == len(texts), (ingest[-1][2], len(texts))
        ceiling_ingestor = Ingestor(
            embedder=InstantEmbedder(embedder),
            sparse=BM25SparseEmbedder(),
            store=store,
            batch_size=settings.batch_size,
            max_bytes=MAX_BYTES,
        )
        ceiling = await ingest_round(ceiling_ingestor, folder, "ceiling")
    finally:
        await store.aclose()
        await embedder.aclose()
        shutil.rmtree(run_dir, ignore_errors=True)
    model_rate = max(len(texts) / wall for wall, _ in model)
    ingest_rate = max(len(texts) / wall for wall, _, _ in ingest)
    model_cpu_ms = min(cpu for _, cpu in model) * 1000 / len(texts)
    ingest_cpu_ms = min(cpu for _, cpu, _ in ingest) * 1000 / len(texts)
    ceiling_rate = len(texts) / ceiling[0]
    note = (
        f"{len(texts)} chunks, {len(docs)} documents, {settings.threads} inference threads; without the model "
        f"the pipeline takes {ceiling_rate:.0f} chunks/s (a model k x faster: ~min(k x model, that))"
    )
    figures = [
        Figure(RATIO, round(ingest_rate / model_rate, 3), note),
        Figure(INGEST_RATE, round(ingest_rate, 1), f"CPU {ingest_cpu_ms:.1f} ms/chunk"),
        Figure(MODEL_RATE, round(model_rate, 1), f"CPU {model_cpu_ms:.1f} ms/chunk"),
    ]
    print(table(figures), flush=True)
    return {
        "load_average_at_start": os.getloadavg(),
        "chunks": len(texts),
        "documents": len(docs),
        "threads": settings.threads,
        "batch_size": settings.batch_size,
        "model_rounds_s": [round(w, 2) for w, _ in model],
        "ingest_rounds_s": [round(w, 2) for w, _, _ in ingest],
        "model_cpu_ms_per_chunk": round(model_cpu_ms, 2),
        "ingest_cpu_ms_per_chunk": round(ingest_cpu_ms, 2),
        "pipeline_without_model_chunks_per_s": round(ceiling_rate, 1),
        "pipeline_without_model_cpu_ms_per_chunk": round(ceiling[1] * 1000 / len(texts), 2),
        "figures": [f.to_dict() for f in figures],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller corpus, two rounds (< 1 minute)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.quick))), flush=True)


if __name__ == "__main__":
    main()
