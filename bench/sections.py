"""Bench sections run as subprocesses, and the issue-15 targets measured by the fake-upstream load levels.

A section is a module run as `python -m bench.<section> [--quick]`: it prints human lines and, as its LAST
stdout line, one JSON object with key "figures": [Figure.to_dict(), ...] (and anything else it measured).
bench.run runs SECTIONS in order, prints their lines, and merges their figures into the one targets table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.procs import PYTHON, ROOT
from bench.targets import Figure, Target

SECTIONS = ["bench.offline", "bench.workers", "bench.embedded_scale", "bench.ingest_overlap"]

CPU_50 = Target("cpu_ms_per_turn_50ws", "fake upstream: server CPU per turn, 50 ws", "ms", 6, True)
LAG_50 = Target("loop_lag_p99_ms_50ws", "fake upstream: loop lag p99, 50 ws", "ms", 10, True)
TTFT_P50_1 = Target("ttft_excess_p50_ms_1ws", "fake upstream: TTFT excess p50, 1 ws", "ms", 5, True)
TTFT_P99_50 = Target("ttft_excess_p99_ms_50ws", "fake upstream: TTFT excess p99, 50 ws", "ms", 50, True)


def level_figures(levels: list[dict[str, Any]]) -> list[Figure]:
    """The fake-upstream targets from the async websocket rows (a level not run is NOT MEASURED)."""
    rows = {r["conversations"]: r for r in levels if r.get("design") == "async" and r["transport"] == "ws"}

    def figure(target: Target, conversations: int, key: str) -> Figure:
        row = rows.get(conversations)
        if row is None:
            return Figure(target, None, f"level {conversations} not run")
        errors = sum(row["errors"].values()) if row.get("errors") else 0
        return Figure(target, row.get(key), f"{errors} errors" if errors else "")

    return [
        figure(CPU_50, 50, "cpu_ms_per_turn"),
        figure(LAG_50, 50, "loop_lag_p99_ms"),
        figure(TTFT_P50_1, 1, "ttft_excess_p50_ms"),
        figure(TTFT_P99_50, 50, "ttft_excess_p99_ms"),
    ]


def figure_from_dict(d: dict[str, Any]) -> Figure:
    """A section's Figure.to_dict() back into a Figure ("target" reads like "<= 6 ms" or ">= 200 turns/s")."""
    op, bound, unit = str(d["target"]).split(" ", 2)
    target = Target(str(d["name"]), str(d["label"]), unit, float(bound), op == "<=")
    value = d.get("value")
    return Figure(target, None if value is None else float(value), str(d.get("note") or ""))


def last_json(stdout: str) -> dict[str, Any] | None:
    """The section's result: its last non-empty stdout line, if that is a JSON object with "figures"."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        found = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) and isinstance(found.get("figures"), list) else None


def run_section(module: str, *, quick: bool, log: Path, timeout: float = 1200) -> dict[str, Any]:
    """Run one section; its result dict, or {"figures": [], "error": why} when it is missing or failed."""
    if importlib.util.find_spec(module) is None:
        print(f"{module}: NOT MEASURED: module missing", flush=True)
        return {"figures": [], "error": "module missing"}
    print(f"-- {module}", flush=True)
    try:
        out = subprocess.run(  # noqa: S603 - our own interpreter and module
            [PYTHON, "-m", module, *(["--quick"] if quick else [])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired:
        print(f"{module}: NOT MEASURED: no result within {timeout:g} s", flush=True)
        return {"figures": [], "error": "timeout"}
    with log.open("a") as f:
        f.write(out.stderr)
    result = last_json(out.stdout)
    for line in out.stdout.splitlines()[: -1 if result is not None else None]:
        print(line, flush=True)
    if out.returncode != 0 or result is None:
        print(f"{module}: NOT MEASURED: exit {out.returncode}: {out.stderr[-800:]}", flush=True)
        return {"figures": [], "error": f"exit {out.returncode}"}
    return result
