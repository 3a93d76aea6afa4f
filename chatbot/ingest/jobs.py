"""Ingestion as a job: what a job is (JobSpec), how far it got (JobProgress), what it does (run_job), and the
in-process runner (LocalJobs). jobs_redis.py runs the same run_job on saq workers over Redis.

A job is owned by one tenant: every lookup takes the caller's tenant, and another tenant's job id is unknown
(404), never forbidden (403), so ids do not leak. A job runs on without its client (the HTTP request that
started it returns 202 at once); cancel stops it between two files or two embedding batches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from chatbot.errors import ChatbotError, UnknownJob
from chatbot.ingest.service import Ingestor, IngestResult

if TYPE_CHECKING:
    from chatbot.ingest.reindex import Reindexer

log = logging.getLogger(__name__)

Kind = Literal["upload", "sync", "url", "reindex"]
Status = Literal["queued", "running", "done", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})
MAX_LISTED = 200  # results / errors / skipped entries kept per job (the counters keep counting)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to ingest: uploaded files, a server-side folder to mirror, or a URL (page or sitemap); or a
    reindex of the whole collection with the embedder named `embedder` (ingest/reindex.py)."""

    kind: Kind
    files: tuple[tuple[str, bytes], ...] = ()
    path: str | None = None
    url: str | None = None
    metadata: dict[str, Any] | None = None  # uploads: stored on every chunk of these files
    embedder: str | None = None  # reindex: the target embedder

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "files": [[name, base64.b64encode(data).decode()] for name, data in self.files],
            "path": self.path,
            "url": self.url,
            "metadata": self.metadata,
            "embedder": self.embedder,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> JobSpec:
        files = tuple((str(n), base64.b64decode(d)) for n, d in raw.get("files") or ())
        return cls(
            kind=raw["kind"],
            files=files,
            path=raw.get("path"),
            url=raw.get("url"),
            metadata=raw.get("metadata"),
            embedder=raw.get("embedder"),
        )


@dataclass(slots=True)
class JobProgress:
    """A job's state as clients read it (GET /v1/ingest/jobs/ID and each SSE progress event)."""

    id: str
    tenant: str
    kind: Kind
    status: Status = "queued"
    files_total: int = 0
    files_done: int = 0
    chunks: int = 0
    written: int = 0
    deleted: int = 0
    unchanged: int = 0  # sync: files whose stat or hash matched the manifest
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, str] | None = None  # why a failed job failed as a whole

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def add_result(self, result: IngestResult) -> None:
        self.files_done += 1
        self.written += result.written
        if len(self.results) < MAX_LISTED:
            self.results.append(result.to_dict())

    def add_error(self, source: str, err: ChatbotError) -> None:
        self.files_done += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append({"source": source, "code": err.code, "message": err.message})

    def add_skipped(self, source: str, reason: str) -> None:
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append({"source": source, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        end = self.finished_at or time.time()
        elapsed = end - self.started_at if self.started_at else 0.0
        return {
            "job_id": self.id,
            "kind": self.kind,
            "status": self.status,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "chunks": self.chunks,
            "written": self.written,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "chunks_per_second": round(self.chunks / elapsed, 2) if elapsed > 0 else 0.0,
            "errors": list(self.errors),
            "skipped": list(self.skipped),
            "results": list(self.results),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, tenant: str, raw: dict[str, Any]) -> JobProgress:
        names = {"kind", "status", "files_total", "files_done", "chunks", "written", "deleted", "unchanged"}
        names |= {"errors", "skipped", "results", "created_at", "started_at", "finished_at", "error"}
        return cls(id=raw["job_id"], tenant=tenant, **{k: raw[k] for k in names if k in raw})


Notify = Callable[[], Awaitable[None]]


async def run_job(
    spec: JobSpec,
    progress: JobProgress,
    ingestor: Ingestor,
    settings: Any,
    notify: Notify,
    reindexer: Reindexer | None = None,
) -> None:
    """Do the work of one job, updating `progress` and calling `notify` after each step. A file that fails
    is an entry in progress.errors and the job goes on; CancelledError propagates (cancel)."""

    def on_chunks(n: int) -> None:
        progress.chunks += n

    if spec.kind == "upload":
        progress.files_total = len(spec.files)
        await notify()
        for name, data in spec.files:
            try:
                progress.add_result(
                    await ingestor.ingest_bytes(
                        progress.tenant, name, data, on_chunks=on_chunks, metadata=spec.metadata
                    )
                )
            except ChatbotError as exc:
                progress.add_error(name, exc)
            await notify()
    elif spec.kind == "sync" and spec.path is not None:
        from chatbot.ingest.sync import LocalSink, manifest_path, sync_folder

        root = Path(spec.path)
        sink = LocalSink(ingestor, progress.tenant, on_chunks=on_chunks)
        manifest = manifest_path(settings.jobs.state_dir, progress.tenant, root)
        await sync_folder(root, sink, manifest=manifest, progress=progress, notify=notify)
    elif spec.kind == "url" and spec.url is not None:
        from chatbot.ingest.fetch import fetch_pages

        async for page in fetch_pages(spec.url, settings.fetch, progress=progress):
            try:
                progress.add_result(
                    await ingestor.ingest_bytes(progress.tenant, page.source, page.data, on_chunks=on_chunks)
                )
            except ChatbotError as exc:
                progress.add_error(page.source, exc)
            await notify()
    elif spec.kind == "reindex" and spec.embedder is not None:
        if reindexer is None:  # a worker process cannot switch the serving processes' embedder
            raise ChatbotError(
                "A reindex runs in the serving process (jobs.backend local).", code="invalid_job"
            )
        await reindexer.run(spec.embedder, progress, notify)
    else:
        raise ChatbotError("This job names nothing to ingest.", code="invalid_job")


class JobRunner(Protocol):
    """Where jobs run: in this process (LocalJobs) or on workers over Redis (jobs_redis.RedisJobs)."""

    async def submit(self, tenant: str, spec: JobSpec) -> JobProgress: ...

    async def get(self, tenant: str, job_id: str) -> JobProgress: ...

    async def cancel(self, tenant: str, job_id: str) -> JobProgress: ...

    def stream_progress(self, tenant: str, job_id: str) -> AsyncIterator[JobProgress]: ...

    async def aclose(self) -> None: ...


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


async def run_tracked(
    spec: JobSpec,
    progress: JobProgress,
    ingestor: Ingestor,
    settings: Any,
    notify: Notify,
    reindexer: Reindexer | None = None,
) -> None:
    """run_job with the job's life around it: running -> done | failed | cancelled, timestamps, one log line."""
    progress.status, progress.started_at = "running", time.time()
    await notify()
    try:
        await run_job(spec, progress, ingestor, settings, notify, reindexer)
        progress.status = "done"
    except asyncio.CancelledError:
        progress.status = "cancelled"
        raise
    except ChatbotError as exc:
        progress.status, progress.error = "failed", {"code": exc.code, "message": exc.message}
    except Exception:
        log.exception("ingestion job %s failed", progress.id)
        err = ChatbotError()
        progress.status, progress.error = "failed", {"code": err.code, "message": err.message}
    finally:
        progress.finished_at = time.time()
        log.info(
            "ingestion job %s %s: %d files, %d chunks, %d errors",
            progress.id,
            progress.status,
            progress.files_done,
            progress.chunks,
            len(progress.errors),
        )
        await asyncio.shield(notify())


@dataclass(eq=False, slots=True)
class _Local:
    progress: JobProgress
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class LocalJobs:
    """Jobs as asyncio tasks of this process, at most `concurrency` running at once (the rest queued). A
    reindex takes every slot: it waits for running jobs, and later ones wait for it (their chunks would
    land in the collection being replaced)."""

    def __init__(self, ingestor: Ingestor, settings: Any, reindexer: Reindexer | None = None) -> None:
        self._ingestor = ingestor
        self._settings = settings
        self._reindexer = reindexer
        self._slots = asyncio.Semaphore(settings.jobs.concurrency)
        self._exclusive = asyncio.Lock()  # two reindexes taking slots at once would deadlock
        self._jobs: dict[str, _Local] = {}

    async def submit(self, tenant: str, spec: JobSpec) -> JobProgress:
        self._forget_old()
        job = _Local(JobProgress(id=new_job_id(), tenant=tenant, kind=spec.kind))
        self._jobs[job.progress.id] = job
        job.task = asyncio.create_task(self._run(job, spec), name=f"ingest-{job.progress.id}")
        return job.progress

    async def _run(self, job: _Local, spec: JobSpec) -> None:
        async def notify() -> None:
            job.changed.set()

        try:
            async with contextlib.AsyncExitStack() as held:
                if spec.kind == "reindex":
                    await held.enter_async_context(self._exclusive)
                slots = self._settings.jobs.concurrency if spec.kind == "reindex" else 1
                for _ in range(slots):
                    await held.enter_async_context(self._slots)
                await run_tracked(spec, job.progress, self._ingestor, self._settings, notify, self._reindexer)
        except asyncio.CancelledError:
            job.progress.status = "cancelled"  # also when cancelled while queued
            job.progress.finished_at = job.progress.finished_at or time.time()
            job.changed.set()

    def _find(self, tenant: str, job_id: str) -> _Local:
        job = self._jobs.get(job_id)
        if job is None or job.progress.tenant != tenant:
            raise UnknownJob()
        return job

    async def get(self, tenant: str, job_id: str) -> JobProgress:
        return self._find(tenant, job_id).progress

    async def cancel(self, tenant: str, job_id: str) -> JobProgress:
        job = self._find(tenant, job_id)
        if job.task is not None and not job.task.done():
            job.task.cancel()
            await asyncio.wait((job.task,))
        return job.progress

    async def stream_progress(self, tenant: str, job_id: str) -> AsyncIterator[JobProgress]:
        job = self._find(tenant, job_id)
        while True:
            job.changed.clear()
            yield job.progress
            if job.progress.terminal:
                return
            await job.changed.wait()

    def _forget_old(self) -> None:
        horizon = time.time() - self._settings.jobs.keep_seconds
        for job_id, job in list(self._jobs.items()):
            if job.progress.terminal and (job.progress.finished_at or 0) < horizon:
                del self._jobs[job_id]

    async def aclose(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
