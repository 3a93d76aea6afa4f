"""Both cores (issue 15, target 3): turns/s at equal p99 TTFT for `serve --workers 1` vs `--workers 2`.

    python -m bench.workers [--quick]      # last stdout line: JSON with "figures"

Fake upstream path: the OpenAI fake (bench.run's workload: embeddings 30 ms, first token 100 ms, 50 tokens),
a local-mode collection of bench.run's cached chunks served as read-only copies (server.embedded_replicas; no
Qdrant server binary is available here), conversations, event logs and quotas on a real redis-server, closed-
loop websocket clients (bench.load) at a few levels. A design's capacity is its best turns/s among the levels
whose p99 TTFT excess stays within TTFT_BOUND_MS: the same latency bound for both, so the ratio is the gain of
the second process at equal p99 TTFT.

Embedded offline path (local MiniLM embedder, extractive answers): one process whose ONNX inference uses one
or two threads (local.threads: the second core is the inference threads' there), and two workers of one
thread each, at one closed-loop level. CPU per turn (all processes) is printed beside turns/s: it survives a
loaded machine better than turns/s do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import procs
from bench.levels import run_level
from bench.procs import PYTHON, ROOT
from bench.run import STORE_VERSION, UPSTREAM_MS, fake_args, server_env
from bench.targets import Figure, Target, table

TTFT_BOUND_MS = 250.0
SPEEDUP = Target(
    "workers_speedup", "2 workers / 1 worker: turns/s at equal p99 TTFT (fake upstream)", "x", 1.5, False
)
OFFLINE_SPEEDUP = Target(
    "workers_offline_speedup", "2 workers / 1 worker: turns/s, offline embedded path", "x", 1.5, False
)


def capacity(rows: list[dict[str, Any]]) -> float | None:
    """Best turns/s among the levels within the p99 TTFT bound and without errors (None: no level was)."""
    ok = [
        r["turns_per_s"]
        for r in rows
        if r["ttft_excess_p99_ms"] is not None
        and r["ttft_excess_p99_ms"] <= TTFT_BOUND_MS
        and not r["errors"]
    ]
    return max(ok, default=None)


def serve_and_load(
    env: Mapping[str, str],
    port: int,
    levels: list[int],
    warmup: float,
    duration: float,
    log: Path,
    *,
    floor_ms: float,
) -> list[dict[str, Any]]:
    """One server (supervisor and workers) for every level, websocket clients; CPU of every process. TTFT
    figures are the excess over `floor_ms` (the fake upstream's own latency; 0 offline)."""
    url = f"http://127.0.0.1:{port}"
    rows = []
    with procs.started([PYTHON, "-m", "chatbot", "serve"], env, log=log) as server:
        procs.wait_http(url + "/readyz", within=120, proc=server)
        pids = [server.pid, *procs.children(server.pid)]
        for level in levels:
            row = run_level(url, "ws", level, warmup, duration, pids, looplag=False, floor_ms=floor_ms)
            row["workers"] = int(env.get("CHATBOT_SERVER__WORKERS", "1"))
            row["threads"] = env.get("CHATBOT_LOCAL__THREADS")
            rows.append(row)
            print(
                f"workers={row['workers']} threads={row['threads'] or '-'} conv={level}: "
                f"{row['turns_per_s']} turns/s, cpu {row['cpu_ms_per_turn']} ms/turn, "
                f"ttft excess p50 {row['ttft_excess_p50_ms']} p99 {row['ttft_excess_p99_ms']} ms, "
                f"errors {row['errors'] or 0}",
                flush=True,
            )
    return rows


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~2-3 minutes: fewer levels, short windows")
    args = parser.parse_args()
    warmup, duration = (3.0, 6.0) if args.quick else (5.0, 20.0)
    levels = [10, 50] if args.quick else [10, 25, 50, 100, 150]
    chunks = 2_000 if args.quick else 10_000
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not installed (bash scripts/provision.sh)")
    run_dir = Path(tempfile.mkdtemp(prefix="chatbot-bench-workers-", dir=procs.fast_tmp()))
    log = run_dir / "bench.log"
    fake_port, redis_port, port = procs.free_port(), procs.free_port(), procs.free_port()
    report: dict[str, Any] = {"load_average_at_start": os.getloadavg(), "ttft_bound_ms": TTFT_BOUND_MS}
    redis = [redis_bin, "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    try:
        with procs.started(redis, log=log), procs.started(fake_args(fake_port), log=log):
            procs.wait_port(redis_port)
            procs.wait_port(fake_port)
            env = server_env(fake_port, Path("unused"), 0)
            store, _ = procs.cached_store(f"store-{chunks}-v{STORE_VERSION}", env, chunks, log, rebuild=False)
            shared = {
                "CHATBOT_REDIS__URL": f"redis://127.0.0.1:{redis_port}",
                "CHATBOT_JOBS__BACKEND": "redis",
                "CHATBOT_SERVER__EMBEDDED_REPLICAS": "true",
            }
            fake_rows: dict[int, list[dict[str, Any]]] = {}
            for workers in (1, 2):
                qdrant = run_dir / f"fake-{workers}"
                shutil.copytree(store, qdrant)
                env = server_env(fake_port, qdrant, port) | shared | {"CHATBOT_SERVER__WORKERS": str(workers)}
                fake_rows[workers] = serve_and_load(
                    env, port, levels, warmup, duration, log, floor_ms=UPSTREAM_MS
                )
            offline_rows = offline(run_dir, shared, port, warmup, duration, log)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    one, two = capacity(fake_rows[1]), capacity(fake_rows[2])
    by_config = {(r["workers"], r["threads"]): r for r in offline_rows}
    off_one, off_two = by_config[(1, "1")], by_config[(2, "1")]
    figures = [
        Figure(
            SPEEDUP,
            ratio(two, one),
            f"{two} vs {one} turns/s, p99 TTFT excess <= {TTFT_BOUND_MS:g} ms"
            if one and two
            else f"a level within p99 TTFT excess <= {TTFT_BOUND_MS:g} ms: 1 worker {one}, 2 workers {two}",
        ),
        Figure(
            OFFLINE_SPEEDUP,
            ratio(off_two["turns_per_s"], off_one["turns_per_s"]),
            f"{off_two['turns_per_s']} vs {off_one['turns_per_s']} turns/s at {off_one['conversations']} "
            f"conversations; 1 process with 2 inference threads: {by_config[(1, '2')]['turns_per_s']} turns/s",
        ),
    ]
    report |= {"fake_upstream": fake_rows, "offline": offline_rows, "figures": [f.to_dict() for f in figures]}
    print(table(figures), flush=True)
    print(json.dumps(report), flush=True)


def offline(
    run_dir: Path, shared: Mapping[str, str], port: int, warmup: float, duration: float, log: Path
) -> list[dict[str, Any]]:
    """The embedded offline path: the user guide ingested once by the local model, then three designs."""
    base = {
        "CHATBOT_EMBEDDING_PROVIDER": "local",
        "CHATBOT_CHAT_PROVIDER": "extractive",
        "CHATBOT_QDRANT__PATH": str(run_dir / "offline"),
        "CHATBOT_SERVER__PORT": str(port),
        "CHATBOT_SERVER__SHUTDOWN_SECONDS": "1",
        "CHATBOT_LIMITS__MAX_ANSWERS_PER_PROCESS": "512",
        "CHATBOT_LOG_LEVEL": "WARNING",
        "CHATBOT_SERVER__INGEST_ON_START": "false",
        **shared,
    }
    subprocess.run(  # noqa: S603 - our own module
        [PYTHON, "-m", "chatbot", "ingest", "docs/guide"],
        cwd=ROOT,
        env={**os.environ, **base},
        check=True,
        capture_output=True,
        timeout=600,
    )
    rows = []
    for workers, threads in ((1, 1), (1, 2), (2, 1)):
        env = base | {"CHATBOT_SERVER__WORKERS": str(workers), "CHATBOT_LOCAL__THREADS": str(threads)}
        rows += serve_and_load(env, port, [50], warmup, duration, log, floor_ms=0)
    return rows


if __name__ == "__main__":
    main()
