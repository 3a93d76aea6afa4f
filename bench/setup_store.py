"""Fill the benchmark collection through the product's own ingestion path, against the same environment as
the server (OpenAI-compatible embeddings from the fake upstream, BM25 sparse vectors, local-mode Qdrant).

    CHATBOT_...=... python -m bench.setup_store --chunks 10000     # prints one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.corpus import documents
from chatbot.settings import load_settings
from chatbot.wiring import build_services

SECTIONS = 63  # ~64 chunks per document: one embeddings request per document


async def fill(target_chunks: int) -> dict[str, float]:
    settings = load_settings()
    async with build_services(settings) as svc:
        chunks = written = files = 0
        started = time.perf_counter()
        for name, data in documents(10_000, sections=SECTIONS):
            if chunks >= target_chunks:
                break
            result = await svc.ingestor.ingest_bytes(settings.default_tenant, name, data)
            chunks += result.chunks
            written += result.written
            files += 1
        seconds = time.perf_counter() - started
        count = await svc.store.count(settings.default_tenant)
    return {
        "files": files,
        "chunks": chunks,
        "written": written,
        "points": count,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(written / seconds, 1) if written else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(fill(args.chunks))), flush=True)


if __name__ == "__main__":
    main()
