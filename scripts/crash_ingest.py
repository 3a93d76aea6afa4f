"""Full-size crash-safety run of ingestion: SIGKILL `python -m chatbot ingest` at seeded random points,
change or delete documents, rerun to completion, and check every chunk of every document is stored once.

    .venv/bin/python scripts/crash_ingest.py --runs 200 --seed 7

The same trials as tests/reliability/test_crash_ingest.py (CI runs 20); prints the tally as JSON and exits 1
on the first broken invariant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.reliability.crash


async def main(runs: int, seed: int, lanes: int) -> dict[str, object]:
    from chatbot.providers.extractive import ExtractiveChatModel
    from chatbot.providers.local_models import BM25SparseEmbedder, LocalEmbedder
    from chatbot.providers.registry import Providers
    from chatbot.settings import Settings
    from tests.reliability.crash import run_lanes

    settings = Settings(_env_file=None, embedding_provider="local", chat_provider="extractive")  # type: ignore[call-arg]
    embedder = LocalEmbedder(settings.local)
    chat = ExtractiveChatModel(settings.local)
    providers = Providers(embedder=embedder, sparse=BM25SparseEmbedder(), chat=chat, reranker=None)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="crash-ingest-") as root:
            tally = await run_lanes(Path(root), providers, seed=seed, runs=runs, lanes=lanes)
    finally:
        embedder.close()
    return {
        "seed": seed,
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
        **{k: v for k, v in tally.__dict__.items() if k != "crash_states"},
        "crash_states": dict(tally.crash_states),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lanes", type=int, default=2, help="concurrent corpora (one per core)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.runs, args.seed, args.lanes)), indent=2))  # noqa: T201
