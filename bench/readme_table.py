"""The README's performance tables, in Markdown, regenerated from one `make bench` results file.

python -m bench.readme_table bench/results/<date>.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def num(value: Any) -> str:
    """A figure as the README shows it: n/a for none, whole numbers from 100 up, else one decimal."""
    if value is None:
        return "n/a"
    value = float(value)
    return f"{value:.0f}" if abs(value) >= 100 else f"{round(value, 1):g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def heading(report: dict[str, Any]) -> str:
    m = report.get("machine", {})
    command = "make bench-quick" if report.get("quick") else "make bench"
    load = report.get("load_average_at_start")
    load_text = f", load average {num(load[0])} at start" if load else ""
    return (
        f"`{command}`, {str(report.get('date', ''))[:10]}, {m.get('cpus', '?')} vCPU, "
        f"{m.get('memory_gib', '?')} GiB, Python {m.get('python', '?')}{load_text} (git {report.get('git', '?')}):"
    )


def levels_table(levels: list[dict[str, Any]]) -> str:
    rows = [
        [
            "sync peer" if r.get("design") == "sync" else str(r.get("design", "async")),
            str(r["transport"]),
            str(r["conversations"]),
            num(r["turns_per_s"]),
            num(r["cpu_ms_per_turn"]),
            f"{num(r['ttft_excess_p50_ms'])} / {num(r['ttft_excess_p99_ms'])}",
            num(r["gap_p99_ms"]),
            num(r["loop_lag_p99_ms"]),
            num(r["peak_rss_mb"]),
        ]
        for r in levels
    ]
    header = ["design", "transport", "conversations", "turns/s", "server CPU ms/turn",
              "TTFT+ p50 / p99 ms", "token gap p99 ms", "loop lag p99 ms", "RSS MiB"]  # fmt: skip
    return _table(header, rows)


def offline_table(levels: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(r.get("level", "")),
            str(r["conversations"]),
            num(r.get("think_s", 0.0)),
            num(r["turns_per_s"]),
            num(r["cpu_ms_per_turn"]),
            f"{num(r['ttft_excess_p50_ms'])} / {num(r['ttft_excess_p99_ms'])}",
            num(r["loop_lag_p99_ms"]),
            num(r["peak_rss_mb"]),
        ]
        for r in levels
    ]
    header = ["offline level", "ws conversations", "think s", "turns/s", "server CPU ms/turn",
              "TTFT p50 / p99 ms", "loop lag p99 ms", "RSS MiB"]  # fmt: skip
    return _table(header, rows)


def targets_table(targets: list[dict[str, Any]]) -> str:
    rows = []
    for t in targets:
        # three significant digits: a verdict must be readable from the figure (6.02 ms is not "6 ms")
        measured = "-" if t.get("value") is None else f"{float(t['value']):.3g} {t['unit']}"
        verdict = f"**{t['verdict']}**" + (f" ({t['note']})" if t.get("note") else "")
        rows.append([str(t["label"]), measured, str(t["target"]), verdict])
    return _table(["target (issue 15)", "measured", "bound", "verdict"], rows)


def markdown(report: dict[str, Any]) -> str:
    """Heading, the load-level table, the offline levels (when run), and the targets table."""
    parts = [heading(report)]
    if report.get("levels"):
        parts.append(levels_table(report["levels"]))
    offline = report.get("sections", {}).get("bench.offline", {}).get("levels")
    if offline:
        parts.append(offline_table(offline))
    if report.get("targets"):
        parts.append(targets_table(report["targets"]))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a bench/results/<date>.json file")
    args = parser.parse_args()
    print(markdown(json.loads(args.results.read_text(encoding="utf-8"))), end="")


if __name__ == "__main__":
    main()
