"""Tracing overhead per turn: the same answers through the chat service (offline embedder, extractive model,
the user guide in an in-memory store) with tracing off and on (the SDK's TracerProvider with a
BatchSpanProcessor, as served, exporting to memory so no network time is counted). Off and on alternate in
blocks to share the machine's noise. Also the cost of one turn's spans alone, without the pipeline.

    python -m bench.bench_tracing [--turns 60] [--rounds 3]

Prints lines for people and one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chatbot.chat.caller import Caller
from chatbot.chat.service import Ask
from chatbot.ingest.service import Ingestor
from chatbot.ops import tracing
from chatbot.providers.extractive import ExtractiveChatModel
from chatbot.providers.local_models import BM25SparseEmbedder, LocalEmbedder
from chatbot.providers.registry import Providers
from chatbot.settings import Settings
from chatbot.stores.factory import vector_store
from chatbot.wiring import Services, build_services

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide"
QUESTIONS = (
    "How do I connect over websocket?",
    "How do I stop an answer?",
    "What does the metrics endpoint show?",
    "How are API keys configured?",
)


async def turn(svc: Services, question: str) -> float:
    caller = Caller(tenant="public")
    started = time.perf_counter()
    ask = await svc.chat_service.start(caller, Ask(message=question))
    async for _seq, _event in await svc.chat_service.follow(caller, ask.message_id):
        pass
    return (time.perf_counter() - started) * 1000


async def block(svc: Services, turns: int) -> list[float]:
    return [await turn(svc, QUESTIONS[i % len(QUESTIONS)]) for i in range(turns)]


def spans_alone(n: int) -> float:
    """Microseconds for one turn's spans (turn + 6 stage spans with GenAI attributes), no pipeline."""
    started = time.perf_counter()
    for _ in range(n):
        with tracing.span("chatbot.turn", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}):
            for stage in ("embed", "retrieve", "rerank"):
                with tracing.stage(stage):
                    pass
            first = tracing.start("chatbot.first_token")
            generate = tracing.start("chat m", {"gen_ai.operation.name": "chat"})
            tracing.end(first)
            attrs = tracing.usage_attributes(
                model="m", input_tokens=10, output_tokens=20, finish_reason="stop"
            )
            tracing.end(generate, attrs)
            tracing.annotate(attrs)
            tracing.current_trace_id()
    return (time.perf_counter() - started) / n * 1e6


async def main_async(turns: int, rounds: int) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        embedding_provider="local",
        chat_provider="extractive",
        qdrant={"path": ":memory:", "collection": "bench"},  # type: ignore[arg-type]
        stream={"coalesce_ms": 0},  # type: ignore[arg-type]
    )
    embedder = LocalEmbedder(settings.local)
    providers = Providers(
        embedder=embedder,
        sparse=BM25SparseEmbedder(),
        chat=ExtractiveChatModel(settings.local),
        reranker=None,
    )
    store = vector_store(settings.qdrant)
    await store.open()
    await store.ensure_collection(embedder.name, embedder.dimensions, sparse=True)
    await Ingestor(embedder=embedder, sparse=providers.sparse, store=store).ingest_paths(
        "public", [GUIDE], root=GUIDE
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    off: list[float] = []
    on: list[float] = []
    async with build_services(settings, providers=providers, store=store) as svc:
        await block(svc, 8)  # warm-up
        for _ in range(rounds):
            tracing.uninstall()
            off += await block(svc, turns)
            tracing.install(provider)
            on += await block(svc, turns)
            exporter.clear()
        tracing.uninstall()
        micro_off = spans_alone(250)
        tracing.install(provider)
        micro_on = spans_alone(250)  # under the batch queue (2048 spans)
        tracing.uninstall()
    provider.shutdown()
    await store.aclose()
    embedder.close()
    return {
        "turns_per_mode": len(off),
        "off_ms_median": round(statistics.median(off), 3),
        "on_ms_median": round(statistics.median(on), 3),
        "off_ms_mean": round(statistics.fmean(off), 3),
        "on_ms_mean": round(statistics.fmean(on), 3),
        "overhead_ms_median": round(statistics.median(on) - statistics.median(off), 3),
        "spans_alone_us_off": round(micro_off, 2),
        "spans_alone_us_on": round(micro_on, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=60, help="Turns per block (default 60).")
    parser.add_argument("--rounds", type=int, default=3, help="Off/on block pairs (default 3).")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.ERROR
    )  # the loop-lag warnings of a busy machine would drown the figures
    result = asyncio.run(main_async(args.turns, args.rounds))
    print(f"turns per mode: {result['turns_per_mode']}")
    print(f"tracing off: {result['off_ms_median']:.3f} ms/turn median ({result['off_ms_mean']:.3f} mean)")
    print(f"tracing on:  {result['on_ms_median']:.3f} ms/turn median ({result['on_ms_mean']:.3f} mean)")
    print(f"overhead:    {result['overhead_ms_median']:.3f} ms/turn (median difference)")
    print(
        f"one turn's spans alone: {result['spans_alone_us_off']:.2f} us off, {result['spans_alone_us_on']:.2f} us on"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
