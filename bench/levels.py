"""One load level against a running server: bench/load.py in its own process, the server's CPU, loop lag and
peak RSS sampled at the measured window's edges; the row printer shared by every section that runs levels.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.procs import PYTHON, ROOT


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def run_level(
    url: str,
    transport: str,
    level: int,
    warmup: float,
    duration: float,
    pids: list[int],
    *,
    looplag: bool,
    floor_ms: float,
    think: float = 0.0,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One closed-loop level; samples the server's CPU and loop lag at the window's edges.

    TTFT figures are the excess over `floor_ms` (the upstream's own latency; 0 offline). `think` seconds
    pass between a conversation's answer and its next question (0: closed loop).
    """
    handle, name = tempfile.mkstemp(prefix="chatbot-load-", suffix=".json")
    os.close(handle)
    out = Path(name)
    args = [
        PYTHON,
        "-m",
        "bench.load",
        "--url",
        url,
        "--transport",
        transport,
        "--concurrency",
        str(level),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--max-turns",
        str(int(level * duration * 10 + 100)),
        *(["--think", str(think)] if think else []),
        "--out",
        str(out),
        *extra,
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)  # noqa: S603
    cpu0 = cpu1 = procs.cpu(pids)
    lag: dict[str, Any] = {}
    result: dict[str, Any] = {}
    t0 = t1 = time.perf_counter()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("measure-start"):
                if looplag:
                    procs.http_json("POST", url + "/debug/looplag/reset")
                cpu0, t0 = procs.cpu(pids), time.perf_counter()
            elif line.startswith("measure-end"):
                cpu1, t1 = procs.cpu(pids), time.perf_counter()
                if looplag:
                    lag = procs.http_json("GET", url + "/debug/looplag")
        proc.wait(timeout=warmup + duration + 120)
        if proc.returncode == 0:
            result = json.loads(out.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.unlink(missing_ok=True)
    turns = result.get("completed", 0)
    ttft_ms = [x * 1000 - floor_ms for x in result.get("ttft", [])]
    gaps_ms = [x * 1000 for x in result.get("gaps", [])]
    window = max(t1 - t0, 1e-9)

    def r(x: float | None, nd: int = 1) -> float | None:
        return None if x is None else round(x, nd)

    return {
        "transport": transport,
        "conversations": level,
        "think_s": think,
        "turns": turns,
        "turns_per_s": round(turns / window, 1),
        "cpu_ms_per_turn": r((cpu1.total - cpu0.total) * 1000 / turns, 2) if turns else None,
        "loop_cpu_ms_per_turn": r((cpu1.loop - cpu0.loop) * 1000 / turns, 2) if turns else None,
        "cpu_utilisation": round((cpu1.total - cpu0.total) / window, 2),
        "ttft_excess_p50_ms": r(quantile(ttft_ms, 0.5)),
        "ttft_excess_p99_ms": r(quantile(ttft_ms, 0.99)),
        "gap_p99_ms": r(quantile(gaps_ms, 0.99)),
        "loop_lag_p99_ms": lag.get("p99_ms") if looplag else None,
        "loop_lag_max_ms": lag.get("max_ms") if looplag else None,
        "peak_rss_mb": procs.peak_rss_mb(pids),
        "errors": result.get("errors", {}),
        "window_s": round(window, 2),
    }


def print_row(design: str, row: dict[str, Any]) -> None:
    def f(v: Any, width: int) -> str:
        return ("n/a" if v is None else str(v)).rjust(width)

    print(
        f"{design:8} {row['transport']:4} {row['conversations']:>4} {f(row['turns_per_s'], 7)} "
        f"{f(row['cpu_ms_per_turn'], 8)} {f(row['loop_cpu_ms_per_turn'], 8)} "
        f"{f(row['ttft_excess_p50_ms'], 8)} "
        f"{f(row['ttft_excess_p99_ms'], 8)} {f(row['gap_p99_ms'], 7)} {f(row['loop_lag_p99_ms'], 7)} "
        f"{f(row['peak_rss_mb'], 7)} {sum(row['errors'].values()) if row['errors'] else 0:>4}",
        flush=True,
    )


HEADER = (
    "design   tr   conv  turn/s  cpu/turn loop/turn ttft+p50 ttft+p99 gap p99 lag p99 rss MiB errs\n"
    "                             ms       ms        ms       ms       ms      ms"
)


def capacity(rows: list[dict[str, Any]], bound_ms: float) -> int:
    """The highest level whose p99 TTFT excess stays under the bound (0 if none)."""
    ok = [
        r["conversations"]
        for r in rows
        if r["ttft_excess_p99_ms"] is not None and r["ttft_excess_p99_ms"] <= bound_ms and not r["errors"]
    ]
    return max(ok, default=0)
