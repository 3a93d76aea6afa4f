"""The performance suite: one command, a table, and bench/results/<date>.json.

    make bench                      # full run (bounded to ~15 minutes)
    python -m bench.run --quick     # ~2-3 minutes: shorter windows, smaller micro-benchmarks

Workload (every process on 127.0.0.1, every loop bounded in count and time):
- the fake OpenAI upstream in its own process: embeddings 30 ms, first token 100 ms, 50 tokens 10 ms apart;
- the server (`python -m chatbot serve`, hypercorn + uvloop) in its own process, OpenAI-compatible embedder
  (384 dims) and chat model, local-mode Qdrant holding 10k chunks filled by the product's own ingestion
  (built once into bench/results/cache, copied to tmpfs per run);
- closed-loop clients in their own process (bench/load.py) over websocket and SSE at 1, 10, 50 and 100
  concurrent conversations, each level with a warm-up and a bounded window;
- the synchronous peer (bench/sync_peer.py: Flask on gunicorn gthread) on the same workload over SSE;
- micro-benchmarks (bench/micro.py): offline ingestion throughput, retrieval latency by collection size;
- the sections in bench/sections.py SECTIONS, each its own process (bench/offline.py: the offline default
  under websocket load; the others measure workers, embedded scale and ingestion overlap);
- at the end, ONE table of every issue-15 target with MET / NOT MET (bench/targets.py), also in the JSON
  ("targets"); `python -m bench.readme_table <results.json>` turns a results file into the README table.

Per level: server CPU ms per turn (all threads, and the event-loop thread alone), turns/s, time to first
token minus the upstream's own 130 ms (p50, p99), inter-token-frame gap p99, loop lag p99 measured inside
the server (GET /debug/looplag), peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.levels import HEADER, capacity, print_row, run_level
from bench.procs import PYTHON, RESULTS, ROOT
from bench.sections import SECTIONS, figure_from_dict, level_figures, run_section
from bench.targets import table

UPSTREAM_MS = 30 + 100  # the fake's embedding latency + first-token latency: the floor of TTFT
EMBED_MODEL = "bench-embed-384"
CHAT_MODEL = "bench-chat"
STORE_VERSION = 1  # bump when bench/corpus.py or setup_store.py change what the collection holds
PEER_WORKERS, PEER_THREADS = (
    2,
    50,
)  # 2 processes for 2 cores; 100 threads = one per conversation at the top level
TTFT_BOUNDS_MS = (50, 250)


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(int(mem) / 1024 / 1024),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def server_env(fake_port: int, qdrant_path: Path, port: int) -> dict[str, str]:
    return {
        "CHATBOT_EMBEDDING_PROVIDER": "openai",
        "CHATBOT_CHAT_PROVIDER": "openai",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "CHATBOT_OPENAI__EMBEDDING_MODEL": EMBED_MODEL,
        "CHATBOT_OPENAI__EMBEDDING_DIMENSIONS": "384",
        "CHATBOT_OPENAI__CHAT_MODEL": CHAT_MODEL,
        # the fake upstream is not a limit here; the default (64) would queue the 100-conversation level
        "CHATBOT_OPENAI__MAX_CONCURRENCY": "256",
        "CHATBOT_QDRANT__PATH": str(qdrant_path),
        # dense: the same turn as the sync peer, which searches with qdrant-client's local mode (dense only)
        "CHATBOT_RETRIEVAL__MODE": "dense",
        "CHATBOT_SERVER__INGEST_ON_START": "false",
        "CHATBOT_SERVER__HOST": "127.0.0.1",
        "CHATBOT_SERVER__PORT": str(port),
        "CHATBOT_SERVER__SHUTDOWN_SECONDS": "1",
        "CHATBOT_STREAM__GRACE_SECONDS": "5",
        "CHATBOT_LIMITS__MAX_ANSWERS_PER_PROCESS": "512",
        "CHATBOT_LOG_LEVEL": "WARNING",
        "CHATBOT_LOG_FORMAT": "text",
    }


def fake_args(port: int) -> list[str]:
    return [
        PYTHON,
        "-m",
        "tests.fakes.upstream",
        "--port",
        str(port),
        "--embed-ms",
        "30",
        "--first-token-ms",
        "100",
        "--tokens",
        "50",
        "--token-ms",
        "10",
        "--dimensions",
        "384",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~2-3 minutes: short windows, small micro runs")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 50, 100])
    parser.add_argument("--transports", nargs="+", default=["ws", "sse"], choices=["ws", "sse"])
    parser.add_argument("--warmup", type=float, help="seconds per level before measuring")
    parser.add_argument("--duration", type=float, help="measured seconds per level")
    parser.add_argument("--chunks", type=int, default=10_000, help="collection size for the load levels")
    parser.add_argument("--no-peer", action="store_true", help="skip the synchronous peer")
    parser.add_argument(
        "--no-micro", action="store_true", help="skip ingestion and retrieval micro-benchmarks"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached collection")
    parser.add_argument(
        "--ws-no-compression", action="store_true", help="websocket clients do not offer permessage-deflate"
    )
    parser.add_argument(
        "--sections",
        nargs="*",
        default=SECTIONS,
        help=f"section modules run after the load levels (default: {' '.join(SECTIONS)}; none: no sections)",
    )
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/<date>.json)")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 5.0)
    duration = args.duration if args.duration is not None else (6.0 if args.quick else 25.0)

    extra = ("--no-compression",) if args.ws_no_compression else ()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    log = RESULTS / f"{stamp}.log"
    started = time.monotonic()
    report: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "quick": args.quick,
        "load_average_at_start": os.getloadavg(),
        "workload": {
            "upstream": "fake OpenAI: embeddings 30 ms, first token 100 ms, 50 tokens 10 ms apart",
            "collection": f"{args.chunks} chunks x 384 dims, local-mode Qdrant (tmpfs), dense top 5",
            "clients": "closed loop, one new conversation per turn",
            "warmup_s": warmup,
            "window_s": duration,
            "peer": f"Flask + gunicorn gthread, {PEER_WORKERS} workers x {PEER_THREADS} threads, sync SDKs",
        },
        "levels": [],
    }
    run_dir = Path(tempfile.mkdtemp(prefix="chatbot-bench-", dir=procs.fast_tmp()))
    fake_port, server_port, peer_port = procs.free_port(), procs.free_port(), procs.free_port()
    try:
        with procs.started(fake_args(fake_port), log=log):
            procs.wait_port(fake_port)
            name = f"store-{args.chunks}-v{STORE_VERSION}"
            env = server_env(fake_port, Path("unused"), 0)
            store, setup = procs.cached_store(name, env, args.chunks, log, args.rebuild)
            report["setup"] = setup
            print(f"collection: {setup}", flush=True)
            print(HEADER, flush=True)
            # A fresh server (and peer) per level: no backlog or cache of one level leaks into the next,
            # and the peak RSS is that level's.
            url = f"http://127.0.0.1:{server_port}"
            for transport in args.transports:
                for level in args.levels:
                    server_store = run_dir / "server-qdrant"
                    shutil.rmtree(server_store, ignore_errors=True)
                    shutil.copytree(store, server_store)
                    env = server_env(fake_port, server_store, server_port)
                    with procs.started([PYTHON, "-m", "chatbot", "serve"], env, log=log) as server:
                        procs.wait_http(url + "/healthz", proc=server)
                        row = run_level(
                            url,
                            transport,
                            level,
                            warmup,
                            duration,
                            [server.pid],
                            looplag=True,
                            floor_ms=UPSTREAM_MS,
                            extra=extra,
                        )
                    row["design"] = "async"
                    report["levels"].append(row)
                    print_row("async", row)
            if not args.no_peer:
                peer_env = {
                    "OPENAI_API_KEY": "bench",
                    "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
                    "PEER_EMBEDDING_MODEL": EMBED_MODEL,
                    "PEER_CHAT_MODEL": CHAT_MODEL,
                    "PEER_QDRANT_PATH": str(run_dir / "peer-qdrant"),
                    "PEER_TENANT": "public",
                    "OPENBLAS_NUM_THREADS": "1",
                }
                # the peer reads qdrant-client's local-mode files; the server's cached store is Qdrant Edge's
                legacy = {**env, "CHATBOT_QDRANT__ENGINE": "qdrant-local"}
                peer_store, _ = procs.cached_store(
                    f"{name}-qdrant-local", legacy, args.chunks, log, args.rebuild
                )
                shutil.copytree(peer_store, run_dir / "peer-qdrant")
                gunicorn = [
                    PYTHON,
                    "-m",
                    "gunicorn",
                    "-k",
                    "gthread",
                    "-w",
                    str(PEER_WORKERS),
                    "--threads",
                    str(PEER_THREADS),
                    "-b",
                    f"127.0.0.1:{peer_port}",
                    "--log-level",
                    "warning",
                    "bench.sync_peer:app",
                ]
                peer_url = f"http://127.0.0.1:{peer_port}"
                for level in args.levels:
                    with procs.started(gunicorn, peer_env, log=log) as peer:
                        for _ in range(8):  # open every worker's collection copy before measuring
                            procs.wait_http(peer_url + "/healthz", proc=peer)
                        pids = [peer.pid, *procs.children(peer.pid)]
                        row = run_level(
                            peer_url,
                            "sse",
                            level,
                            warmup,
                            duration,
                            pids,
                            looplag=False,
                            floor_ms=UPSTREAM_MS,
                        )
                    row["design"] = "sync"
                    row["loop_cpu_ms_per_turn"] = None  # no event loop: threads
                    report["levels"].append(row)
                    print_row("sync", row)
        if not args.no_micro:
            micro = subprocess.run(  # noqa: S603
                [PYTHON, "-m", "bench.micro", *(["--quick"] if args.quick else [])],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            )
            with log.open("a") as f:
                f.write(micro.stderr)
            lines = [x for x in micro.stdout.splitlines() if x.startswith("{")]
            if micro.returncode != 0 or not lines:
                print(f"micro-benchmarks failed: {micro.stderr[-1500:]}", flush=True)
            else:
                report["micro"] = json.loads(lines[-1])
                for line in micro.stdout.splitlines():
                    if not line.startswith("{"):
                        print(line, flush=True)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    report["sections"] = {m: run_section(m, quick=args.quick, log=log) for m in args.sections}

    summary: dict[str, Any] = {}
    async_sse = [r for r in report["levels"] if r["design"] == "async" and r["transport"] == "sse"]
    async_ws = [r for r in report["levels"] if r["design"] == "async" and r["transport"] == "ws"]
    sync_rows = [r for r in report["levels"] if r["design"] == "sync"]
    for bound in TTFT_BOUNDS_MS:
        a, w, s = capacity(async_sse, bound), capacity(async_ws, bound), capacity(sync_rows, bound)
        summary[f"p99_ttft_excess_le_{bound}ms"] = {
            "async_sse": a,
            "async_ws": w,
            "sync_sse": s,
            "ratio_sse": round(a / s, 2) if s else None,
        }
        print(
            f"conversations at p99 TTFT excess <= {bound} ms: async sse {a}, async ws {w}, sync {s}"
            + (f" (x{a / s:.1f})" if s else ""),
            flush=True,
        )
    report["summary"] = summary
    figures = level_figures(report["levels"]) + [
        figure_from_dict(d) for section in report["sections"].values() for d in section["figures"]
    ]
    report["targets"] = [f.to_dict() for f in figures]
    print("\nissue 15 targets\n" + table(figures), flush=True)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    out = args.out or RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out} in {report['elapsed_s']} s (log: {log})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
