"""Ingestion jobs at scale: queued on saq over Redis, run by `python -m chatbot worker` processes.

Why saq (measured in the commit that added this module): arq caps redis-py below 6 (installing it would
downgrade our redis 8 client), taskiq-redis pulls aiohttp and eight other packages for a broker we would use
a fraction of; saq is asyncio-native, depends on redis-py (any version) and croniter only, and has the two
operations we need beyond enqueue: abort (cancel a running job: the worker cancels its task) and per-job
timeouts, with a sweeper that marks jobs of dead workers failed.

saq owns queueing, delivery and abort. The progress clients read is ours: one Redis key per job
(`{prefix}:ingest-job:{id}`, JSON of the tenant and JobProgress, expiring after jobs.keep_seconds), written
at submit by the instance that accepted the job and after each step by the worker, read by any instance.
Writing it apart from saq's job record means a progress write never races saq's own status writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from saq import Job, Queue, Worker

from chatbot.errors import UnknownJob
from chatbot.ingest.jobs import JobProgress, JobSpec, new_job_id, run_tracked

log = logging.getLogger(__name__)
FUNCTION = "ingest_job"
POLL_SECONDS = 0.2  # how often a progress stream re-reads the job's key
WRITE_EVERY = 0.25  # a worker writes progress at most this often (and always at the end)


def queue_name(settings: Any) -> str:
    return f"{settings.redis.key_prefix}-ingest"


def progress_key(settings: Any, job_id: str) -> str:
    return f"{settings.redis.key_prefix}:ingest-job:{job_id}"


async def write_progress(redis: Redis, settings: Any, progress: JobProgress) -> None:
    value = json.dumps({"tenant": progress.tenant, "progress": progress.to_dict()})
    await redis.set(progress_key(settings, progress.id), value, ex=int(settings.jobs.keep_seconds))


class RedisJobs:
    """The JobRunner of every serving instance when jobs.backend = redis: submits, reads, cancels."""

    def __init__(self, settings: Any, redis: Redis, queue: Queue) -> None:
        self._settings, self._redis, self._queue = settings, redis, queue

    @classmethod
    async def open(cls, settings: Any) -> RedisJobs:
        url = settings.redis.url
        queue = Queue.from_url(url, name=queue_name(settings))
        await queue.connect()
        return cls(settings, Redis.from_url(url, socket_timeout=settings.redis.timeout), queue)

    async def submit(self, tenant: str, spec: JobSpec) -> JobProgress:
        progress = JobProgress(id=new_job_id(), tenant=tenant, kind=spec.kind)
        await write_progress(self._redis, self._settings, progress)
        await self._queue.enqueue(
            Job(
                function=FUNCTION,
                key=progress.id,
                kwargs={"tenant": tenant, "job_id": progress.id, "spec": spec.to_json()},
                timeout=0,  # no saq deadline: the per-file limits bound the work
                retries=1,
                ttl=int(self._settings.jobs.keep_seconds),
            )
        )
        return progress

    async def get(self, tenant: str, job_id: str) -> JobProgress:
        raw = await self._redis.get(progress_key(self._settings, job_id))
        stored = json.loads(raw) if raw else None
        if not stored or stored.get("tenant") != tenant:
            raise UnknownJob()
        return JobProgress.from_dict(tenant, stored["progress"])

    async def cancel(self, tenant: str, job_id: str) -> JobProgress:
        progress = await self.get(tenant, job_id)
        if progress.terminal:
            return progress
        job = await self._queue.job(job_id)
        if job is not None:
            await self._queue.abort(job, "cancelled")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the worker writes the end once its task is cancelled
            progress = await self.get(tenant, job_id)
            if progress.terminal:
                return progress
            if progress.status == "queued":
                break  # removed from the queue before a worker took it
            await asyncio.sleep(POLL_SECONDS)
        progress.status, progress.finished_at = "cancelled", time.time()
        await write_progress(self._redis, self._settings, progress)
        return progress

    async def stream_progress(self, tenant: str, job_id: str) -> AsyncIterator[JobProgress]:
        last: dict[str, Any] | None = None
        while True:
            progress = await self.get(tenant, job_id)
            now = progress.to_dict()
            now.pop("chunks_per_second")  # changes with the clock alone
            if now != last:
                last = now
                yield progress
            if progress.terminal:
                return
            await asyncio.sleep(POLL_SECONDS)

    async def aclose(self) -> None:
        await self._queue.disconnect()
        await self._redis.aclose()


async def ingest_job(ctx: dict[str, Any], *, tenant: str, job_id: str, spec: dict[str, Any]) -> None:
    """The saq task: run_job with progress written to the job's key (throttled)."""
    services, redis = ctx["services"], ctx["redis"]
    settings = services.settings
    progress = JobProgress(id=job_id, tenant=tenant, kind=spec["kind"])
    written = 0.0

    async def notify() -> None:
        nonlocal written
        now = time.monotonic()
        if progress.terminal or (progress.status == "running" and now - written >= WRITE_EVERY):
            written = now
            await write_progress(redis, settings, progress)

    try:
        await run_tracked(JobSpec.from_json(spec), progress, services.ingestor, settings, notify)
    except asyncio.CancelledError:
        await asyncio.shield(write_progress(redis, settings, progress))
        raise


async def run_worker(settings: Any, services: Any) -> None:
    """`python -m chatbot worker`: with the services the CLI built once, take ingestion jobs until
    SIGTERM/SIGINT (the CLI builds them: ingest/ does not import the wiring above it)."""
    redis = Redis.from_url(settings.redis.url, socket_timeout=settings.redis.timeout)
    queue = Queue.from_url(settings.redis.url, name=queue_name(settings))

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["services"], ctx["redis"] = services, redis

    worker = Worker(  # type: ignore[type-var]  # saq's Context TypedDict: we add services and redis
        queue, functions=[(FUNCTION, ingest_job)], concurrency=settings.jobs.concurrency, startup=startup
    )
    log.info("worker: taking ingestion jobs from %s", queue_name(settings))
    try:
        await worker.start()  # saq handles SIGTERM/SIGINT itself: returns once they stopped its jobs
    finally:
        await queue.disconnect()
        await redis.aclose()
