"""Event-loop lag: how late a task that sleeps `interval` wakes up, sampled all the time, cheaply.

    monitor = LoopLagMonitor(interval=0.05, threshold=0.1)
    await monitor.start()
    monitor.add_listener(lambda lag: histogram.observe(lag))   # each sample, in seconds
    monitor.snapshot()   # {"p50_ms": ..., "p99_ms": ..., "max_ms": ..., ...} over the recent window
    await monitor.stop()

Naming what blocked: asyncio's own slow-callback report needs debug mode, which costs far more than it tells.
Here a small watchdog thread wakes every `interval` and, when the loop has not ticked for `threshold`, takes
the loop thread's Python stack (sys._current_frames) and the task that was current at that moment. The
warning logged when the late tick finally runs names that task and the innermost frames. The thread costs
one wake-up per interval and touches the loop thread's stack only while the loop is blocked.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LagListener = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class BlockedSample:
    """What the watchdog saw on the loop thread while the loop was late."""

    task: str | None
    frames: tuple[str, ...]  # innermost last, "path:line in function"
    seen_after: float  # seconds since the last tick when the stack was taken

    def describe(self) -> str:
        where = " <- ".join(reversed(self.frames)) if self.frames else "no Python frame"
        return f"task={self.task or '-'} at {where}"


class LoopLagMonitor:
    """Samples the running loop's lag (seconds late past `interval`); warns when one exceeds `threshold`."""

    def __init__(
        self, interval: float = 0.05, threshold: float = 0.1, *, window: int = 1200, watchdog: bool = True
    ) -> None:
        if interval <= 0 or threshold <= 0 or window < 1:
            raise ValueError("interval and threshold must be > 0 and window >= 1")
        self.interval = interval
        self.threshold = threshold
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self._listeners: list[LagListener] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._watchdog_enabled = watchdog
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_tick = 0.0  # perf_counter of the latest tick, written by the loop, read by the watchdog
        self._blocked: BlockedSample | None = None  # written by the watchdog, taken by the loop
        self._total = 0
        self._over = 0
        self._max = 0.0
        self._last_blocked: BlockedSample | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start sampling the running loop (idempotent)."""
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self._last_tick = time.perf_counter()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="looplag-monitor")
        if self._watchdog_enabled:
            self._watchdog = threading.Thread(target=self._watch, name="looplag-watchdog", daemon=True)
            self._watchdog.start()

    async def stop(self) -> None:
        """Stop sampling; the task is awaited and the watchdog thread joined."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            await asyncio.to_thread(watchdog.join, max(1.0, 4 * self.interval))

    # -- listeners and figures ------------------------------------------------------------------------

    def add_listener(self, callback: LagListener) -> None:
        """`callback(lag_seconds)` on the loop after every sample; it must be quick. Exceptions are logged."""
        self._listeners.append(callback)

    def remove_listener(self, callback: LagListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def reset(self) -> None:
        """Forget the samples and counters (a benchmark calls this after its warm-up)."""
        self._samples.clear()
        self._total = self._over = 0
        self._max = 0.0
        self._last_blocked = None

    def snapshot(self) -> dict[str, Any]:
        """p50/p99/max of the recent window in milliseconds, plus counters since start or the last reset."""
        ordered = sorted(self._samples)
        return {
            "running": self.running,
            "interval_ms": self.interval * 1000,
            "threshold_ms": self.threshold * 1000,
            "window_samples": len(ordered),
            "p50_ms": round(_quantile(ordered, 0.50) * 1000, 3),
            "p99_ms": round(_quantile(ordered, 0.99) * 1000, 3),
            "max_ms": round(self._max * 1000, 3),
            "samples": self._total,
            "over_threshold": self._over,
            "last_blocked": self._last_blocked.describe() if self._last_blocked else None,
        }

    # -- internals ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.interval
        while True:
            before = time.perf_counter()
            self._last_tick = before
            await asyncio.sleep(interval)
            now = time.perf_counter()
            self._last_tick = now
            self._record(max(0.0, now - before - interval))

    def _record(self, lag: float) -> None:
        self._samples.append(lag)
        self._total += 1
        self._max = max(lag, self._max)
        blocked, self._blocked = self._blocked, None
        if lag > self.threshold:
            self._over += 1
            self._last_blocked = blocked
            log.warning(
                "event loop lag %.1f ms (threshold %.0f ms); %s",
                lag * 1000,
                self.threshold * 1000,
                f"while late, the loop was running {blocked.describe()}" if blocked else "no stack was taken",
            )
        for listener in self._listeners:
            try:
                listener(lag)
            except Exception:
                log.exception("loop lag listener failed")

    def _watch(self) -> None:
        """Watchdog thread: take the loop thread's stack once per late tick."""
        captured_for = 0.0
        while not self._stopping.wait(self.interval):
            tick = self._last_tick
            late = time.perf_counter() - tick - self.interval
            if late > self.threshold and tick != captured_for:
                captured_for = tick
                self._blocked = self._capture(late)

    def _capture(self, late: float) -> BlockedSample:
        frame = sys._current_frames().get(self._loop_thread_id or -1)
        frames: tuple[str, ...] = ()
        if frame is not None:
            summary = traceback.extract_stack(frame, limit=4)
            frames = tuple(f"{fs.filename}:{fs.lineno} in {fs.name}" for fs in summary)
        task_name = None
        with contextlib.suppress(Exception):  # read from another thread: best effort by design
            task = asyncio.current_task(self._loop) if self._loop is not None else None
            task_name = task.get_name() if task is not None else None
        return BlockedSample(task=task_name, frames=frames, seen_after=late + self.interval)


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted samples (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]
