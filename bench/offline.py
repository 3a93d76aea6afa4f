"""Offline load levels (issue 15, target 1): the default offline server under websocket load.

    python -m bench.offline [--quick]     # human lines, then one JSON line {"figures": [...], "levels": [...]}

Workload: `python -m chatbot serve` with no API key: the local MiniLM embedder + BM25 (hybrid retrieval), the
extractive answer, local-mode Qdrant holding a collection of bench/corpus.py documents ingested by the same
local embedder (built once into bench/results/cache, copied to tmpfs per level). Two levels over the native
websocket, each on a fresh server:
- capacity: 50 closed-loop conversations (no think time): turns/s, server CPU ms per turn, TTFT p50/p99;
- paced: 100 conversations pausing 1 s between turns: TTFT p50/p99 (send -> first token frame; no upstream).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import procs
from bench.levels import HEADER, print_row, run_level
from bench.procs import PYTHON, RESULTS
from bench.targets import Figure, Target

STORE_VERSION = 1  # bump when bench/corpus.py or setup_store.py change what the collection holds
CAPACITY = Target("offline_turns_per_s_50ws", "offline: turns/s, 50 closed-loop ws", "turns/s", 200, False)
PACED_P99 = Target("offline_paced_ttft_p99_ms", "offline: TTFT p99, 100 ws pausing 1 s", "ms", 100, True)


def offline_env(qdrant_path: Path, port: int) -> dict[str, str]:
    """The offline default, made explicit (a key in the caller's environment must not switch providers)."""
    return {
        "CHATBOT_EMBEDDING_PROVIDER": "local",
        "CHATBOT_CHAT_PROVIDER": "extractive",
        "OPENAI_API_KEY": "",
        "COHERE_API_KEY": "",
        "CO_API_KEY": "",
        "CHATBOT_QDRANT__PATH": str(qdrant_path),
        "CHATBOT_SERVER__INGEST_ON_START": "false",
        "CHATBOT_SERVER__HOST": "127.0.0.1",
        "CHATBOT_SERVER__PORT": str(port),
        "CHATBOT_SERVER__SHUTDOWN_SECONDS": "1",
        "CHATBOT_STREAM__GRACE_SECONDS": "5",
        "CHATBOT_LIMITS__MAX_ANSWERS_PER_PROCESS": "512",
        "CHATBOT_LOG_LEVEL": "WARNING",
        "CHATBOT_LOG_FORMAT": "text",
    }


def figures(levels: list[dict[str, Any]]) -> list[Figure]:
    """The two offline targets from the measured rows (None when a level is missing or had errors)."""
    by_name = {row["level"]: row for row in levels}

    def value(name: str, key: str) -> tuple[float | None, str]:
        row = by_name.get(name)
        if row is None:
            return None, "level not run"
        errors = sum(row["errors"].values()) if row["errors"] else 0
        return row[key], (f"{errors} errors" if errors else "")

    cap, cap_note = value("capacity", "turns_per_s")
    p99, p99_note = value("paced", "ttft_excess_p99_ms")
    return [Figure(CAPACITY, cap, cap_note), Figure(PACED_P99, p99, p99_note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows (~1.5 minutes once cached)")
    parser.add_argument("--chunks", type=int, default=2000, help="collection size (local embedder)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached collection")
    parser.add_argument("--only", choices=["capacity", "paced"], help="run one level")
    args = parser.parse_args()
    warmup, duration = (3.0, 10.0) if args.quick else (5.0, 25.0)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"{dt.datetime.now():%Y-%m-%dT%H%M%S}-offline.log"
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"offline-store-{args.chunks}-v{STORE_VERSION}"
    build_env = {**offline_env(Path("unused"), 0), "CHATBOT_LOCAL__THREADS": "2"}  # a batch job: both cores
    store, setup = procs.cached_store(name, build_env, args.chunks, log, args.rebuild)
    print(f"offline collection: {setup}", flush=True)
    plan = [("capacity", 50, 0.0), ("paced", 100, 1.0)]
    levels: list[dict[str, Any]] = []
    run_dir = Path(tempfile.mkdtemp(prefix="chatbot-bench-offline-", dir=procs.fast_tmp()))
    try:
        print("offline levels (TTFT is absolute: no upstream)\n" + HEADER, flush=True)
        for level_name, conversations, think in plan:
            if args.only and args.only != level_name:
                continue
            server_store = run_dir / "qdrant"
            shutil.rmtree(server_store, ignore_errors=True)
            shutil.copytree(store, server_store)
            env = offline_env(server_store, port)
            with procs.started([PYTHON, "-m", "chatbot", "serve"], env, log=log) as server:
                procs.wait_http(url + "/healthz", proc=server)
                row = run_level(
                    url,
                    "ws",
                    conversations,
                    warmup,
                    duration,
                    [server.pid],
                    looplag=True,
                    floor_ms=0.0,
                    think=think,
                )
            row["level"] = level_name
            row["design"] = "offline"
            levels.append(row)
            print_row(f"off-{level_name[:4]}", row)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    found = figures(levels)
    print(json.dumps({"figures": [f.to_dict() for f in found], "levels": levels, "setup": setup}), flush=True)


if __name__ == "__main__":
    main()
