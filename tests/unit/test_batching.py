"""InferenceQueue: urgent calls merged into one run, bulk runs behind them, failures and shutdown per caller."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import numpy as np
import pytest

from chatbot.errors import ShuttingDown
from chatbot.providers.batching import InferenceQueue
from chatbot.providers.local_models import LocalEmbedder, inference_workers
from chatbot.settings import LocalModelSettings

QUESTIONS = [
    "How do I stream answers over a websocket?",
    "What does the rate limiter refuse?",
    "Where are uploaded files stored, and for how long are they kept before the nightly cleanup job?",
    "Which tenant owns a conversation?",
    "Can the widget resume a stream after the browser loses its connection for a few seconds?",
    "Why?",
]


class GatedRun:
    """A batch function that records each batch, upper-cases items, fails on "boom", and can hold a run."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.wrong_count = False

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.started.set()
        assert self.gate.wait(10), "the test never released the gate"
        if "boom" in items:
            raise ValueError("boom")
        if self.wrong_count:
            return []
        return [item.upper() for item in items]

    async def hold(self, queue: InferenceQueue[str, str], first: str = "first") -> asyncio.Task[list[str]]:
        """Occupy the (single) worker with a bulk run of `first` until `release()`."""
        self.gate.clear()
        self.started.clear()
        task = asyncio.create_task(queue.bulk([first]))
        assert await asyncio.to_thread(self.started.wait, 10)
        return task

    def release(self) -> None:
        self.gate.set()


Gated = tuple[GatedRun, InferenceQueue[str, str]]


@pytest.fixture
async def gated() -> AsyncIterator[Gated]:
    run = GatedRun()
    queue: InferenceQueue[str, str] = InferenceQueue(run, workers=1, max_batch=4, name="test")
    try:
        yield run, queue
    finally:
        run.release()
        queue.close()
        await asyncio.to_thread(queue.join)


async def settle() -> None:
    """Let queued tasks reach the queue."""
    for _ in range(5):
        await asyncio.sleep(0)


class TestMerging:
    async def test_urgent_calls_waiting_for_a_busy_worker_share_one_run(self, gated: Gated) -> None:
        """Three urgent calls queued behind a running batch run together, each getting its own results."""
        run, queue = gated
        held = await run.hold(queue)
        calls = [asyncio.create_task(queue.urgent([x])) for x in ("a", "b", "c")]
        await settle()
        run.release()
        assert [await c for c in calls] == [["A"], ["B"], ["C"]]
        assert await held == ["FIRST"]
        assert run.batches == [["first"], ["a", "b", "c"]]

    async def test_a_run_holds_at_most_max_batch_items(self, gated: Gated) -> None:
        """Six waiting one-item calls with max_batch 4 take two runs: four, then two."""
        run, queue = gated
        held = await run.hold(queue)
        calls = [asyncio.create_task(queue.urgent([str(i)])) for i in range(6)]
        await settle()
        run.release()
        assert [(await c)[0] for c in calls] == [str(i) for i in range(6)]
        await held
        assert [len(b) for b in run.batches] == [1, 4, 2]

    async def test_a_call_bigger_than_max_batch_runs_alone(self, gated: Gated) -> None:
        """An urgent call of more items than max_batch is one run of its own, never split or refused."""
        run, queue = gated
        held = await run.hold(queue)
        big = asyncio.create_task(queue.urgent([str(i) for i in range(9)]))
        small = asyncio.create_task(queue.urgent(["s"]))
        await settle()
        run.release()
        assert await big == [str(i) for i in range(9)]
        assert await small == ["S"]
        await held
        assert [len(b) for b in run.batches] == [1, 9, 1]

    async def test_saturated_while_calls_wait_for_a_worker(self, gated: Gated) -> None:
        """Saturated only while a call waits: not when idle, not while the one worker runs alone."""
        run, queue = gated
        assert not queue.saturated
        held = await run.hold(queue)
        assert not queue.saturated
        waiting = asyncio.create_task(queue.urgent(["a"]))
        await settle()
        assert queue.saturated
        run.release()
        assert await waiting == ["A"]
        await held
        assert not queue.saturated

    async def test_an_idle_worker_runs_a_call_at_once(self, gated: Gated) -> None:
        """With nothing running, an urgent call is its own run: no timer holds it back."""
        run, queue = gated
        assert await asyncio.wait_for(queue.urgent(["x"]), 5) == ["X"]
        assert run.batches == [["x"]]
        assert queue.runs == 1

    async def test_urgent_calls_go_before_waiting_bulk_runs(self, gated: Gated) -> None:
        """Bulk runs queued first still wait for an urgent call queued after them; each bulk is one run."""
        run, queue = gated
        held = await run.hold(queue, "ingest-1")
        bulks = [asyncio.create_task(queue.bulk([f"ingest-{i}", "more"])) for i in (2, 3)]
        await settle()
        query = asyncio.create_task(queue.urgent(["query"]))
        await settle()
        run.release()
        await asyncio.gather(held, query, *bulks)
        assert run.batches == [["ingest-1"], ["query"], ["ingest-2", "more"], ["ingest-3", "more"]]

    def test_bad_sizes_are_refused(self) -> None:
        """workers and max_batch below 1 are a ValueError at construction."""
        with pytest.raises(ValueError, match="at least 1"):
            InferenceQueue(GatedRun(), workers=0, max_batch=1)
        with pytest.raises(ValueError, match="at least 1"):
            InferenceQueue(GatedRun(), workers=1, max_batch=0)


class TestFailures:
    async def test_an_exception_fails_only_its_own_batch(self, gated: Gated) -> None:
        """A failing run fails the callers merged into it; the next run's callers get their results."""
        run, queue = gated
        held = await run.hold(queue)
        doomed = [asyncio.create_task(queue.urgent([x])) for x in ("a", "boom", "b", "c")]
        after = asyncio.create_task(queue.urgent(["d"]))  # max_batch 4: the next run
        await settle()
        run.release()
        for task in doomed:
            with pytest.raises(ValueError, match="boom"):
                await task
        assert await after == ["D"]
        assert await held == ["FIRST"]
        assert await queue.urgent(["e"]) == ["E"]  # the worker survived

    async def test_a_wrong_result_count_is_an_error_not_a_misalignment(self, gated: Gated) -> None:
        """A batch function returning fewer results than items fails its callers with RuntimeError."""
        run, queue = gated
        run.wrong_count = True
        with pytest.raises(RuntimeError, match="wrong count"):
            await queue.urgent(["a", "b"])

    async def test_cancelling_one_waiter_leaves_the_others(self, gated: Gated) -> None:
        """A cancelled waiting call is dropped from the run; the calls around it get their results."""
        run, queue = gated
        held = await run.hold(queue)
        calls = [asyncio.create_task(queue.urgent([x])) for x in ("a", "b", "c")]
        await settle()
        calls[1].cancel()
        await settle()
        run.release()
        assert await calls[0] == ["A"]
        assert await calls[2] == ["C"]
        with pytest.raises(asyncio.CancelledError):
            await calls[1]
        await held
        assert run.batches[1] == ["a", "c"]

    async def test_cancelling_a_running_call_leaves_its_batch_mates(self, gated: Gated) -> None:
        """A caller cancelled while its run is on the worker does not disturb the others in that run."""
        run, queue = gated
        run.gate.clear()
        run.started.clear()
        calls = [asyncio.create_task(queue.urgent([x])) for x in ("a", "b")]
        assert await asyncio.to_thread(run.started.wait, 10)
        calls[0].cancel()
        await settle()
        run.release()
        assert await calls[1] == ["B"]
        assert calls[0].cancelled()


class TestClose:
    async def test_close_fails_waiting_calls_and_refuses_new_ones(self, gated: Gated) -> None:
        """close(): waiting calls raise ShuttingDown, the running batch still finishes, new calls are refused."""
        run, queue = gated
        held = await run.hold(queue)
        waiting = [asyncio.create_task(queue.urgent(["a"])), asyncio.create_task(queue.bulk(["b"]))]
        await settle()
        queue.close()
        for task in waiting:
            with pytest.raises(ShuttingDown):
                await task
        run.release()
        assert await held == ["FIRST"]
        with pytest.raises(ShuttingDown):
            await queue.urgent(["c"])
        await asyncio.to_thread(queue.join)
        assert run.batches == [["first"]]


@pytest.fixture
async def embedder() -> AsyncIterator[LocalEmbedder]:
    local = LocalEmbedder(LocalModelSettings(workers=1, query_batch=32))
    await local.warm_up()
    try:
        yield local
    finally:
        await local.aclose()


class TestWithLocalEmbedder:
    async def test_merged_queries_equal_one_by_one_vectors(self, embedder: LocalEmbedder) -> None:
        """Concurrent queries, merged into few runs, give the one-by-one vectors (allclose, atol 1e-6) in order."""
        texts = QUESTIONS * 4
        alone = [(await embedder.embed([t], "query"))[0] for t in texts]
        runs = embedder.runs
        together = await asyncio.gather(*(embedder.embed([t], "query") for t in texts))
        assert embedder.runs - runs < len(texts)  # merged (measured here: 1 or 2 runs, bit-for-bit equal)
        np.testing.assert_allclose(np.array([v[0] for v in together]), np.array(alone), rtol=0, atol=1e-6)

    async def test_a_query_is_not_starved_by_a_long_ingestion(self, embedder: LocalEmbedder) -> None:
        """Three queries asked during a 6-batch ingestion all finish while it still has batches to run."""
        texts = [f"Chunk {i}: " + QUESTIONS[i % len(QUESTIONS)] * 6 for i in range(48)]  # batch_size 8
        ingestion = asyncio.create_task(embedder.embed(texts, "document"))
        await asyncio.sleep(0.02)
        for question in QUESTIONS[:3]:
            runs = embedder.runs
            await embedder.embed([question], "query")
            assert embedder.runs - runs <= 2  # at most the ingestion batch in front of it, then its own
        assert not ingestion.done()
        assert len(await ingestion) == 48

    async def test_closed_embedder_fails_a_waiting_query(self) -> None:
        """A query waiting behind an ingestion batch when the embedder closes raises ShuttingDown."""
        local = LocalEmbedder(LocalModelSettings(workers=1, batch_size=8))
        await local.warm_up()
        ingestion = asyncio.create_task(local.embed(["word " * 60] * 8, "document"))  # one run, ~50 ms
        await asyncio.sleep(0.01)
        query = asyncio.create_task(local.embed(["a question"], "query"))
        await settle()
        await local.aclose()
        results = await asyncio.gather(ingestion, query, return_exceptions=True)
        assert isinstance(results[1], ShuttingDown)

    def test_workers_default_from_the_core_count(self) -> None:
        """Unset workers means one per core (at most 4); an explicit count wins."""
        assert 1 <= inference_workers(LocalModelSettings()) <= 4
        assert inference_workers(LocalModelSettings(workers=3)) == 3


class TestNice:
    async def test_workers_run_at_the_given_niceness(self) -> None:
        """With nice=3 the worker thread runs 3 nicer than the caller (Linux), so the loop wins a busy core."""
        import os

        base = os.getpriority(os.PRIO_PROCESS, 0)

        def niceness(items: list[str]) -> list[int]:
            return [os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) for _ in items]

        queue: InferenceQueue[str, int] = InferenceQueue(niceness, workers=1, max_batch=1, nice=3)
        try:
            assert await queue.urgent(["x"]) == [min(19, base + 3)]
        finally:
            queue.close()
            await asyncio.to_thread(queue.join)
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the caller's thread is untouched
