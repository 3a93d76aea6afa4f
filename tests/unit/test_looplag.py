"""LoopLagMonitor: detects a blocked loop, feeds listeners, names what blocked, and cleans up."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from chatbot.ops.looplag import LoopLagMonitor, _quantile


def block_loop(seconds: float) -> None:
    """A deliberately blocking callback: busy-waits on the loop thread."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def wait_for_samples(monitor: LoopLagMonitor, count: int) -> None:
    for _ in range(200):
        if monitor.snapshot()["samples"] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} samples: {monitor.snapshot()}")


class TestLoopLagMonitor:
    async def test_blocking_callback_is_detected_and_named(self, caplog: pytest.LogCaptureFixture) -> None:
        """A callback blocking the loop 150 ms gives a sample over the threshold and a warning naming it."""
        monitor = LoopLagMonitor(interval=0.01, threshold=0.05)
        await monitor.start()
        try:
            await wait_for_samples(monitor, 2)
            with caplog.at_level(logging.WARNING, logger="chatbot.ops.looplag"):
                asyncio.get_running_loop().call_soon(block_loop, 0.15)
                for _ in range(100):
                    if monitor.snapshot()["over_threshold"]:
                        break
                    await asyncio.sleep(0.01)
            snap = monitor.snapshot()
        finally:
            await monitor.stop()
        assert snap["over_threshold"] == 1
        assert snap["max_ms"] >= 100
        assert "block_loop" in (snap["last_blocked"] or "")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("event loop lag" in w and "block_loop" in w for w in warnings)

    async def test_blocking_task_is_named(self) -> None:
        """When a task blocks the loop, the watchdog reports that task's name."""
        monitor = LoopLagMonitor(interval=0.01, threshold=0.05)
        await monitor.start()

        async def hog() -> None:
            block_loop(0.15)

        try:
            await wait_for_samples(monitor, 2)
            await asyncio.create_task(hog(), name="the-hog")
            for _ in range(100):
                if monitor.snapshot()["over_threshold"]:
                    break
                await asyncio.sleep(0.01)
        finally:
            await monitor.stop()
        assert "task=the-hog" in (monitor.snapshot()["last_blocked"] or "")

    async def test_listener_receives_samples(self) -> None:
        """Each listener gets every lag sample in seconds; a failing listener does not stop the others."""
        monitor = LoopLagMonitor(interval=0.005, threshold=1.0, watchdog=False)
        seen: list[float] = []

        def broken(_lag: float) -> None:
            raise RuntimeError("listener bug")

        monitor.add_listener(broken)
        monitor.add_listener(seen.append)
        await monitor.start()
        try:
            await wait_for_samples(monitor, 5)
        finally:
            await monitor.stop()
        assert len(seen) >= 5
        assert all(0.0 <= lag < 1.0 for lag in seen)
        monitor.remove_listener(seen.append)
        assert monitor._listeners == [broken]

    async def test_stop_leaves_no_task_or_thread(self) -> None:
        """stop() ends the sampling task and joins the watchdog thread; start() again works."""
        monitor = LoopLagMonitor(interval=0.005, threshold=0.5)
        for _ in range(2):
            await monitor.start()
            await monitor.start()  # idempotent
            await wait_for_samples(monitor, 1)
            await monitor.stop()
        assert not monitor.running
        assert not any(t.get_name() == "looplag-monitor" for t in asyncio.all_tasks())
        assert not any(t.name == "looplag-watchdog" for t in threading.enumerate())

    async def test_reset_clears_samples(self) -> None:
        """reset() forgets samples, counters and the maximum."""
        monitor = LoopLagMonitor(interval=0.005, threshold=1.0, watchdog=False)
        await monitor.start()
        try:
            await wait_for_samples(monitor, 3)
            monitor.reset()
            snap = monitor.snapshot()
        finally:
            await monitor.stop()
        assert snap["window_samples"] <= 1
        assert snap["samples"] <= 1

    def test_rejects_nonsense(self) -> None:
        """A non-positive interval or threshold is refused."""
        with pytest.raises(ValueError, match="interval"):
            LoopLagMonitor(interval=0)


@pytest.mark.parametrize(("q", "expected"), [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0), (0.0, 1.0)])
def test_quantile_is_nearest_rank(q: float, expected: float) -> None:
    """Quantiles are nearest-rank over the sorted samples."""
    assert _quantile([float(i) for i in range(1, 101)], q) == expected
    assert _quantile([], q) == 0.0
