"""GET /debug/looplag and POST /debug/looplag/reset against the real app on hypercorn."""

from __future__ import annotations

import asyncio

import httpx


class TestLoopLagRoutes:
    async def test_reports_the_serving_loop_lag(self, served: str) -> None:
        """The snapshot of the monitor started by build_services is served as JSON."""
        await asyncio.sleep(0.12)  # a couple of 50 ms samples
        async with httpx.AsyncClient(base_url=served) as client:
            r = await client.get("/debug/looplag")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["running"] is True
        assert body["samples"] >= 1
        assert {"p50_ms", "p99_ms", "max_ms", "over_threshold", "threshold_ms"} <= body.keys()
        assert body["threshold_ms"] == 100.0

    async def test_reset_forgets_samples(self, served: str) -> None:
        """POST /debug/looplag/reset empties the window and the counters."""
        await asyncio.sleep(0.12)
        async with httpx.AsyncClient(base_url=served) as client:
            r = await client.post("/debug/looplag/reset")
        assert r.status_code == 200, r.text
        assert r.json()["samples"] == 0
        assert r.json()["window_samples"] == 0
