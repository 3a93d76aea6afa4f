"""InferenceQueue: worker threads that run a blocking batch function, with small urgent calls merged.

Two lanes. `urgent` calls (a query's embedding) wait in one queue and a free worker takes every one of them
(up to `max_batch` items) into ONE run: a call that finds a worker idle runs at once, calls that arrive while
every worker is busy wait for the next free worker and go in together, so no call waits on a timer. `bulk`
calls (an ingestion batch) are one run each and only start when no urgent call is waiting, so at most one
bulk run per worker ever sits in front of a query.

The workers are plain threads (the batch function releases the GIL, as onnxruntime does) and callers await a
concurrent future, so nothing on the event loop waits behind inference and the queue serves any loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chatbot.errors import ShuttingDown

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Job(Generic[T, R]):
    items: list[T]
    future: Future[list[R]] = field(default_factory=Future)


class InferenceQueue(Generic[T, R]):
    """Runs `run(items) -> results` (one result per item, in order) on `workers` threads.

    `runs` counts the calls of `run` (tests and metrics read it). `nice` is added to each worker thread's
    niceness (Linux schedules threads, not processes): on a saturated box the event loop thread then wins
    a contended core over inference, which only makes the next batch bigger.
    """

    def __init__(
        self,
        run: Callable[[list[T]], list[R]],
        *,
        workers: int,
        max_batch: int,
        name: str = "inference",
        nice: int = 0,
    ) -> None:
        if workers < 1 or max_batch < 1:
            raise ValueError("workers and max_batch must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._name = name
        self._nice = nice
        self._workers = workers
        self._cond = threading.Condition()
        self._urgent: deque[_Job[T, R]] = deque()
        self._bulk: deque[_Job[T, R]] = deque()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.runs = 0

    @property
    def saturated(self) -> bool:
        """True while calls wait for a worker (every worker is busy and more work is queued)."""
        return bool(self._urgent or self._bulk)

    async def urgent(self, items: Sequence[T]) -> list[R]:
        """Results for `items`, run together with every other urgent call waiting for a worker."""
        return await asyncio.wrap_future(self._put(self._urgent, list(items)))

    async def bulk(self, items: Sequence[T]) -> list[R]:
        """Results for `items` in one run of their own, started only when no urgent call waits."""
        return await asyncio.wrap_future(self._put(self._bulk, list(items)))

    def close(self) -> None:
        """Stop accepting work and fail every waiting call with ShuttingDown; a running batch finishes."""
        with self._cond:
            self._closed = True
            pending = [*self._urgent, *self._bulk]
            self._urgent.clear()
            self._bulk.clear()
            self._cond.notify_all()
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ShuttingDown())

    def join(self) -> None:
        """Wait for the workers to finish their running batch (blocking: call it off the loop)."""
        for thread in self._threads:
            thread.join()

    # -- workers ------------------------------------------------------------------------------------

    def _put(self, lane: deque[_Job[T, R]], items: list[T]) -> Future[list[R]]:
        job: _Job[T, R] = _Job(items)
        with self._cond:
            if self._closed:
                raise ShuttingDown()
            lane.append(job)
            if len(self._threads) < self._workers:  # started on demand: an idle embedder holds no thread
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
        return job.future

    def _take(self) -> list[_Job[T, R]] | None:
        """The next run's jobs (every waiting urgent job up to max_batch items, else one bulk job)."""
        with self._cond:
            while not (self._urgent or self._bulk or self._closed):
                self._cond.wait()
            if self._closed:
                return None
            if not self._urgent:
                return [self._bulk.popleft()]
            jobs = [self._urgent.popleft()]
            size = len(jobs[0].items)
            while self._urgent and size + len(self._urgent[0].items) <= self._max_batch:
                size += len(self._urgent[0].items)
                jobs.append(self._urgent.popleft())
            return jobs

    def _work(self) -> None:
        if self._nice > 0:
            # the calling thread only; unprivileged callers may always lower their priority
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        while (taken := self._take()) is not None:
            jobs = [job for job in taken if job.future.set_running_or_notify_cancel()]  # drop cancelled
            if not jobs:
                continue
            with self._cond:
                self.runs += 1
            try:
                results = self._run([item for job in jobs for item in job.items])
                if len(results) != sum(len(job.items) for job in jobs):
                    raise RuntimeError(f"{self._name}: the batch function returned a wrong count")
            except Exception as exc:  # the batch's callers get its exception; the worker goes on
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                job.future.set_result(results[start : start + len(job.items)])
                start += len(job.items)
