"""Bounded soak: steady websocket and SSE load (connects, disconnects, stops, resumes) on
`python -m chatbot serve` in a subprocess; afterwards its RSS, open file descriptors and asyncio tasks are
back near their baseline.

CI size: 15 s warm-up, then SOAK_SECONDS=35 of load by 8 clients. Full size (about 10 minutes):
`SOAK_SECONDS=600 .venv/bin/python -m pytest tests/reliability/test_soak.py` (or `make soak`). Figures go to
tests/artifacts/soak.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import artifacts_dir, tally_line
from tests.reliability.soak import Load, fake_upstream_process, served, settle

SECONDS = float(os.environ.get("SOAK_SECONDS", "35"))
WARM_UP = float(os.environ.get("SOAK_WARM_UP", "15"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))
SEED = int(os.environ.get("SOAK_SEED", "11"))
# RSS climbs ~25-30 MB over the first minute of load (allocator warm-up: flat over the next 9 minutes, object
# counts flat throughout), so the bound leaves room above that; a leak shows as a rising second half
RSS_GROWTH_MB = 40
FD_TOLERANCE = 2
TASK_TOLERANCE = 3
PLATEAU_AFTER = 120  # seconds of load after which RSS must have stopped rising (the full-size run)


class TestSoak:
    @pytest.mark.timeout(SECONDS + WARM_UP + 180)
    async def test_resources_return_to_baseline_after_load(self, tmp_path: Path) -> None:
        """After warm-up and steady mixed load: RSS within +40 MB, FDs and tasks back to the baseline."""
        async with (
            fake_upstream_process() as openai_url,
            served(openai_url, tmp_path) as server,
            httpx.AsyncClient(timeout=30) as http,
        ):
            started = await server.sample(http)
            warm = Load(server, http, SEED)
            await warm.run(CLIENTS, WARM_UP)
            baseline = await settle(server, http, floor=None, within=10)
            load = Load(server, http, SEED + 1)
            series: list[tuple[float, int]] = []  # (seconds into the load, RSS kB)

            async def watch() -> None:
                while True:
                    series.append((time.monotonic() - began, (await server.sample(http)).rss_kb))
                    await asyncio.sleep(1)

            began = time.monotonic()
            watcher = asyncio.create_task(watch())
            try:
                await load.run(CLIENTS, SECONDS)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            loaded = time.monotonic() - began
            after = await settle(server, http, floor=baseline.tasks, within=20)
        turns = sum(load.tally.values())
        report = {
            "seconds": round(loaded, 1),
            "clients": CLIENTS,
            "actions": turns,
            "actions_per_second": round(turns / loaded, 1),
            "start": started.to_dict(),
            "baseline": baseline.to_dict(),
            "peak_rss_mb": round(max(kb for _, kb in series) / 1024, 1),
            "rss_mb_by_quarter": [round(_at(series, q * loaded / 4) / 1024, 1) for q in (1, 2, 3, 4)],
            "after": after.to_dict(),
            "outcomes": dict(load.tally),
            "problems": load.problems[:20],
        }
        (artifacts_dir() / "soak.json").write_text(json.dumps(report, indent=2))
        print(f"\nsoak: {json.dumps({k: v for k, v in report.items() if k != 'outcomes'})}")  # noqa: T201
        print(f"soak outcomes: {tally_line(load.tally)}")  # noqa: T201
        assert not load.problems, load.problems[:10]
        assert not [k for k in load.tally if k.endswith(("error", "no_end")) or "http_5" in k], load.tally
        assert (after.rss_kb - baseline.rss_kb) / 1024 <= RSS_GROWTH_MB, report
        if (
            loaded >= PLATEAU_AFTER
        ):  # RSS climbs for the first minute or so (allocator warm-up), then flattens
            second_half = (_at(series, loaded) - _at(series, loaded / 2)) / 1024
            assert second_half <= RSS_GROWTH_MB / 3, (
                f"RSS still rising: +{second_half:.1f} MB in the second half"
            )
        assert after.own_fds <= baseline.own_fds + FD_TOLERANCE, report
        assert after.upstream_fds <= 2 * CLIENTS, (
            report
        )  # the SDK pool: at most about one per concurrent answer
        assert after.tasks <= baseline.tasks + TASK_TOLERANCE, report


def _at(series: list[tuple[float, int]], when: float) -> int:
    """The RSS sample nearest to `when` seconds into the load."""
    return min(series, key=lambda sample: abs(sample[0] - when))[1]
