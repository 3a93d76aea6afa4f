"""stream_deadline.StreamDeadline: one timer per stream behaves like asyncio.timeout_at around each next()."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from chatbot.rag.stream_deadline import StreamDeadline


async def slow_stream(delays: list[float], closed: list[bool]) -> AsyncIterator[int]:
    try:
        for i, delay in enumerate(delays):
            await asyncio.sleep(delay)
            yield i
    finally:
        closed.append(True)


class TestStreamDeadline:
    async def test_items_before_the_deadline_pass_through(self) -> None:
        """Items that arrive in time come back in order; the end of the stream is StopAsyncIteration."""
        closed: list[bool] = []
        stream = slow_stream([0, 0.001, 0], closed)
        deadline = StreamDeadline(time.perf_counter() + 5)
        got = [await deadline.next(stream) for _ in range(3)]
        with pytest.raises(StopAsyncIteration):
            await deadline.next(stream)
        deadline.close()
        assert got == [0, 1, 2]
        assert closed == [True]

    async def test_a_stalled_stream_times_out(self) -> None:
        """A next() waiting when the deadline passes raises TimeoutError; the task is left uncancelled."""
        closed: list[bool] = []
        stream = slow_stream([0, 10], closed)
        deadline = StreamDeadline(time.perf_counter() + 0.05)
        assert await deadline.next(stream) == 0
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await deadline.next(stream)
        deadline.close()
        assert time.perf_counter() - started < 1
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await stream.aclose()  # type: ignore[attr-defined]
        assert closed == [True]

    async def test_deadline_passed_between_items_is_raised_by_the_next_call(self) -> None:
        """A deadline that passes while the caller is busy elsewhere makes the following next() raise."""
        stream = slow_stream([0, 0], [])
        deadline = StreamDeadline(time.perf_counter() + 0.02)
        await deadline.next(stream)
        await asyncio.sleep(0.05)  # the caller is "at a yield" when the timer fires
        with pytest.raises(TimeoutError):
            await deadline.next(stream)
        deadline.close()
        await stream.aclose()  # type: ignore[attr-defined]

    async def test_move_extends_the_deadline(self) -> None:
        """move() replaces the deadline (first-token deadline -> whole-answer deadline)."""
        stream = slow_stream([0, 0.08], [])
        deadline = StreamDeadline(time.perf_counter() + 0.04)
        await deadline.next(stream)
        deadline.move(time.perf_counter() + 5)
        assert await deadline.next(stream) == 1
        deadline.close()
        await stream.aclose()  # type: ignore[attr-defined]

    async def test_a_stop_stays_a_cancellation_even_when_the_deadline_fires_too(self) -> None:
        """An outside cancel (stop) that coincides with the deadline is re-raised as CancelledError."""
        stream = slow_stream([10], [])
        holder: list[StreamDeadline] = []

        async def consume() -> None:
            holder.append(StreamDeadline(time.perf_counter() + 5))
            try:
                await holder[0].next(stream)
            finally:
                holder[0].close()

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel("stop")
        holder[0]._expire()  # the timer fires in the same loop iteration, before the task runs
        with pytest.raises(asyncio.CancelledError):
            await task
        await stream.aclose()  # type: ignore[attr-defined]

    async def test_a_stop_while_waiting_is_a_cancellation(self) -> None:
        """An outside cancel before the deadline is a plain CancelledError, not a timeout."""
        stream = slow_stream([10], [])

        async def consume() -> None:
            deadline = StreamDeadline(time.perf_counter() + 5)
            try:
                await deadline.next(stream)
            finally:
                deadline.close()

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await stream.aclose()  # type: ignore[attr-defined]
