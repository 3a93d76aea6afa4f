"""Ingestion over HTTP: uploads (small ones answered at once, big ones as jobs), folder/URL sync jobs, and
each job's progress (JSON, or SSE until it ends) and cancel. Transport only: the work is chatbot.ingest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify, request

from chatbot.api.context import services, tenant
from chatbot.api.http import json_body
from chatbot.api.responses import UPSTREAM, Count, IngestResultDoc, IngestResults, UploadForm, _Reply
from chatbot.api.routes import EventStream, route
from chatbot.api.streaming import HEARTBEAT, SSE_HEADERS, Heartbeat, sse_event, with_heartbeats
from chatbot.api.wire import (
    dumps,
    parse_json,
    validate,
)
from chatbot.errors import (
    BadRequest,
    ChatbotError,
    Forbidden,
    PayloadTooLarge,
    UnreadableDocument,
    UnsupportedMediaType,
)
from chatbot.ingest.filenames import safe_filename
from chatbot.ingest.jobs import JobProgress, JobSpec
from chatbot.stores.base import Metadata
from chatbot.stores.filters import MAX_METADATA_BYTES

bp = Blueprint("ingest", __name__)
JobId = Annotated[str, Field(pattern=r"^job_[0-9a-f]{32}$")]


class FileProblem(_Reply):
    source: str
    code: str | None = None
    message: str | None = None
    reason: str | None = None


class JobDoc(_Reply):
    """An ingestion job's progress."""

    job_id: JobId
    kind: Literal["upload", "sync", "url", "reindex"]
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    files_total: Count
    files_done: Count
    chunks: Count
    written: Count
    deleted: Count
    unchanged: Count
    chunks_per_second: float = Field(ge=0)
    errors: list[FileProblem] = Field(description="Files that failed: source, code, message.")
    skipped: list[FileProblem] = Field(description="Files left out: source, reason.")
    results: list[IngestResultDoc]
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: dict[str, str] | None = Field(description="Why the whole job failed (code, message).")


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048, description="A page or sitemap to ingest.")
    path: str | None = Field(
        None, max_length=4096, description="A server-side folder under jobs.sync_roots to mirror."
    )


class ReindexBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedder: str | None = Field(
        None,
        max_length=200,
        description="The embedder to re-embed with, as collections record it (local/all-MiniLM-L6-v2-int8, "
        "local/multilingual-e5-small-q4, openai/<model>, cohere/<model>); default: the configured one.",
    )


JOB_EVENTS = EventStream(
    "The job's progress (as GET /v1/ingest/jobs/ID) after each step; the last event is the job's end.",
    events=("progress", "done", "failed", "cancelled"),
)


def _job(progress: JobProgress) -> dict[str, Any]:
    return progress.to_dict()


@route(
    bp,
    "POST",
    "/v1/documents",
    role="ingest",
    body=UploadForm,
    body_media_type="multipart/form-data",
    response=IngestResults,
    status=201,
    other={202: JobDoc},
    errors=(413, 415, 422, *UPSTREAM),
    summary="Ingest documents; idempotent (a changed file replaces its old one). Files totalling more than "
    "jobs.upload_job_bytes are ingested as a background job: 202 with its progress.",
)
async def upload_documents() -> Any:
    svc = services()
    limits = svc.settings.limits
    files = await request.files
    uploads = files.getlist("file") + files.getlist("files")
    if not uploads:
        raise BadRequest("Send one or more files as multipart/form-data field 'file'.", code="no_files")
    if len(uploads) > limits.max_files_per_upload:
        raise BadRequest(f"At most {limits.max_files_per_upload} files per request.", code="too_many_files")
    named: list[tuple[str, bytes]] = []
    for upload in uploads:
        if not upload.filename:
            raise BadRequest("Every file needs a file name.", code="missing_filename")
        # the one place a client-chosen name enters the store
        named.append((safe_filename(upload.filename), upload.read()))
    metadata = await upload_metadata()
    if sum(len(data) for _, data in named) > svc.settings.jobs.upload_job_bytes:
        for name, data in named:  # refuse now what the job would refuse later
            if len(data) > limits.max_upload_bytes:
                raise PayloadTooLarge(f"{name} is larger than {limits.max_upload_bytes} bytes.")
        job = await svc.jobs.submit(tenant(), JobSpec(kind="upload", files=tuple(named), metadata=metadata))
        return _accepted(job)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    first_error: ChatbotError | None = None
    for name, data in named:
        try:
            result = await svc.ingestor.ingest_bytes(tenant(), name, data, metadata=metadata)
            results.append(result.to_dict())
        except (PayloadTooLarge, UnsupportedMediaType, UnreadableDocument) as exc:  # this file's own fault
            first_error = first_error or exc
            skipped.append({"source": name, "code": exc.code, "reason": exc.message})
    if not results and first_error is not None:  # nothing ingested: the request failed, as for one file
        raise first_error
    return jsonify({"documents": results, "skipped": skipped}), 201


async def upload_metadata() -> dict[str, Any] | None:
    """The upload's optional `metadata` form field: a JSON object validated as stores.base.Metadata (422)."""
    raw = (await request.form).get("metadata")
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_METADATA_BYTES:
        raise PayloadTooLarge(f"metadata is limited to {MAX_METADATA_BYTES} bytes.")
    meta: Metadata = validate(Metadata, parse_json(raw))
    return meta.root


def _accepted(job: JobProgress) -> Any:
    location = f"/v1/ingest/jobs/{job.id}"
    return jsonify(_job(job)), 202, {"Location": location}


@route(
    bp,
    "POST",
    "/v1/ingest/sync",
    role="ingest",
    body=SyncBody,
    response=JobDoc,
    status=202,
    errors=(400, 403, 413, 422),
    summary="Start a background job ingesting a URL (a page or a sitemap) or mirroring a server-side folder "
    "under jobs.sync_roots.",
)
async def sync() -> Any:
    svc = services()
    body: SyncBody = validate(SyncBody, await json_body())
    if (body.url is None) == (body.path is None):
        raise BadRequest("Send exactly one of url and path.", code="invalid_sync")
    if body.url is not None:
        spec = JobSpec(kind="url", url=body.url)
    else:
        spec = JobSpec(kind="sync", path=str(allowed_folder(body.path or "", svc.settings.jobs.sync_roots)))
    return _accepted(await svc.jobs.submit(tenant(), spec))


@route(
    bp,
    "POST",
    "/v1/admin/reindex",
    role="admin",
    body=ReindexBody,
    response=JobDoc,
    status=202,
    errors=(400, 422),
    summary="Start a job re-embedding every chunk with another embedder into a new collection, switched to "
    "atomically when complete (the old one serves until then, and is dropped after).",
)
async def reindex() -> Any:
    from chatbot.ingest.reindex import target_embedder

    svc = services()
    body: ReindexBody = validate(ReindexBody, await json_body())
    if svc.reindexer is None or svc.settings.jobs.backend != "local":
        raise BadRequest("A reindex runs in the serving process (jobs.backend local).", code="invalid_job")
    target = target_embedder(svc.settings, body.embedder)
    svc.reindexer.check(target)
    return _accepted(await svc.jobs.submit(tenant(), JobSpec(kind="reindex", embedder=target)))


def allowed_folder(raw: str, roots: list[Path]) -> Path:
    """`raw` resolved (links and .. followed) when it lies under one of `roots`; Forbidden otherwise."""
    if not roots:
        raise Forbidden(
            "This server syncs URLs only (no jobs.sync_roots configured).", code="sync_not_allowed"
        )
    folder = Path(raw).resolve()
    if not any(folder.is_relative_to(root.resolve()) for root in roots):
        raise Forbidden("That folder is not under an allowed sync root.", code="sync_not_allowed")
    return folder


@route(
    bp,
    "GET",
    "/v1/ingest/jobs/<job_id>",
    role="ingest",
    response=JobDoc,
    errors=(404,),
    summary="An ingestion job's progress: files, chunks, rate, errors, skipped files.",
)
async def job_status(job_id: str) -> Any:
    return _job(await services().jobs.get(tenant(), job_id))


@route(
    bp,
    "POST",
    "/v1/ingest/jobs/<job_id>/cancel",
    role="ingest",
    response=JobDoc,
    errors=(404,),
    summary="Cancel an ingestion job (files already ingested stay); its progress after the cancel.",
)
async def job_cancel(job_id: str) -> Any:
    return _job(await services().jobs.cancel(tenant(), job_id))


@route(
    bp,
    "GET",
    "/v1/ingest/jobs/<job_id>/events",
    role="ingest",
    stream=JOB_EVENTS,
    errors=(404,),
    summary="An ingestion job's progress as server-sent events until it ends (the job runs on if you leave).",
)
async def job_events(job_id: str) -> Any:
    svc = services()
    await svc.jobs.get(tenant(), job_id)  # 404 now, not a broken stream later
    updates = svc.jobs.stream_progress(tenant(), job_id)
    response = Response(
        _job_frames(updates, svc.settings.stream.heartbeat_seconds), status=200, headers=SSE_HEADERS
    )
    response.timeout = None  # a job may run for long
    return response


async def _job_frames(updates: AsyncIterator[JobProgress], heartbeat: float) -> AsyncIterator[bytes]:
    items = with_heartbeats(updates, heartbeat)
    try:
        async for item in items:
            if isinstance(item, Heartbeat):
                yield HEARTBEAT
                continue
            name = item.status if item.terminal else "progress"
            yield sse_event(dumps(_job(item)), event=name)
    finally:
        await items.aclose()
        aclose = getattr(updates, "aclose", None)
        if aclose is not None:
            await aclose()
