"""A/B and profiling driver for the fake-upstream hot path (issue 15, target 2).

    python -m bench.profile_hot --levels 1 50 --rounds 2 --b-root /work/main        # A/B two checkouts
    python -m bench.profile_hot --levels 50 --profile /tmp/prof.txt                   # py-spy while loaded
    python -m bench.profile_hot --levels 50 --b-env CHATBOT_FOO=1                     # A/B a setting

The same workload as bench/run.py (the fake OpenAI upstream, the cached 10k-chunk collection, closed-loop
websocket clients from bench/load.py), but the variants run back to back, interleaved, `--rounds` times, so
that the load other jobs put on the machine falls on both alike. Each level gets a fresh server. Prints
bench/run.py's row per run and, per variant and level, the median of the rounds. CPU ms per turn is the
figure that survives a busy machine; latency figures move with the load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs, run
from bench.procs import PYTHON, ROOT

FIGURES = (
    "turns_per_s",
    "cpu_ms_per_turn",
    "loop_cpu_ms_per_turn",
    "ttft_excess_p50_ms",
    "ttft_excess_p99_ms",
    "gap_p99_ms",
    "loop_lag_p99_ms",
)


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def one_run(
    root: Path,
    env_extra: dict[str, str],
    store: Path,
    run_dir: Path,
    fake_port: int,
    level: int,
    args: argparse.Namespace,
    log: Path,
    profile: Path | None,
    *,
    no_compression: bool = False,
) -> dict[str, Any]:
    """A fresh server from checkout `root` on a copy of the collection, one load level, optionally py-spy."""
    port = procs.free_port()
    server_store = run_dir / "server-qdrant"
    shutil.rmtree(server_store, ignore_errors=True)
    shutil.copytree(store, server_store)
    env = {**run.server_env(fake_port, server_store, port), **env_extra, "PYTHONPATH": str(root)}
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [PYTHON, "-m", "chatbot", "serve"],
            cwd=root,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    spy: subprocess.Popen[bytes] | None = None
    try:
        procs.wait_http(url + "/healthz", proc=server)
        if profile is not None:
            spy = subprocess.Popen(  # noqa: S603 - py-spy from the venv, on our own child
                [
                    str(Path(PYTHON).parent / "py-spy"),
                    "record",
                    "-r",
                    "200",
                    "-f",
                    "raw",
                    "-o",
                    str(profile),
                    "--pid",
                    str(server.pid),
                    "--duration",
                    str(int(args.warmup + args.duration)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        extra = ("--no-compression",) if no_compression else ()
        row = run.run_level(
            url, "ws", level, args.warmup, args.duration, [server.pid], looplag=True, extra=extra
        )
        if spy is not None:
            spy.wait(timeout=60)
        return row
    finally:
        if spy is not None and spy.poll() is None:
            spy.terminate()
            spy.wait(timeout=10)
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--b-root", type=Path, help="variant B: the server from this checkout")
    parser.add_argument("--b-env", nargs="*", default=[], help="variant B: extra server env KEY=VALUE")
    parser.add_argument("--a-env", nargs="*", default=[], help="variant A: extra server env KEY=VALUE")
    parser.add_argument("--no-compression", action="store_true", help="clients do not offer deflate")
    parser.add_argument(
        "--b-no-compression", action="store_true", help="variant B: clients do not offer deflate"
    )
    parser.add_argument("--profile", type=Path, help="py-spy raw folded stacks of variant A's last run")
    args = parser.parse_args()

    variants: list[tuple[str, Path, dict[str, str], bool]] = [
        ("A", ROOT, _env_pairs(args.a_env), args.no_compression)
    ]
    if args.b_root is not None or args.b_env or args.b_no_compression:
        b_plain = args.no_compression or args.b_no_compression
        variants.append(("B", (args.b_root or ROOT).resolve(), _env_pairs(args.b_env), b_plain))
    run_dir = Path(tempfile.mkdtemp(prefix="chatbot-hot-", dir=procs.fast_tmp()))
    log = run_dir / "servers.log"
    fake_port = procs.free_port()
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    try:
        with procs.started(run.fake_args(fake_port), log=log):
            procs.wait_port(fake_port)
            store, _ = run.ensure_store(args.chunks, fake_port, log, rebuild=False)
            print(run.HEADER, flush=True)
            for k in range(args.rounds):
                for level in args.levels:
                    for name, root, env, plain in variants:
                        last = k == args.rounds - 1 and name == "A"
                        profile = args.profile if last else None
                        row = one_run(
                            root,
                            env,
                            store,
                            run_dir,
                            fake_port,
                            level,
                            args,
                            log,
                            profile,
                            no_compression=plain,
                        )
                        rows.setdefault((name, level), []).append(row)
                        run.print_row(name, row)
                        time.sleep(0.5)
        print(f"\nmedian of {args.rounds} round(s); load average at end: {os.getloadavg()}")
        print("variant conv " + " ".join(f"{f:>20}" for f in FIGURES))
        for (name, level), found in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            medians = []
            for f in FIGURES:
                values = [r[f] for r in found if r[f] is not None]
                medians.append(f"{statistics.median(values):>20.2f}" if values else f"{'n/a':>20}")
            print(f"{name:7} {level:4} " + " ".join(medians), flush=True)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
