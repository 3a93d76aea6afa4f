"""The CLI beside a running server: find it, and do ingest / sync / documents through its API.

An embedded (local-mode) Qdrant folder can be open in one process only. `serve` writes a server file next to
that folder (`./data/qdrant.server.json`: its URL and pid) and removes it on exit; a CLI command that needs
the store first looks for --server / CHATBOT_SERVER_URL, then for a server file whose pid is alive, and
sends the work to that server. Credentials: CHATBOT_API_KEY (a key with the ingest role) when the server
has API keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from chatbot.errors import ChatbotError, ConfigError
from chatbot.ingest.service import IngestResult
from chatbot.settings import Settings

TERMINAL = ("done", "failed", "cancelled")


def server_file(settings: Settings) -> Path | None:
    """Where `serve` announces itself: beside the embedded store (None for a Qdrant server or :memory:)."""
    location = settings.qdrant.location
    if not settings.qdrant.is_local or location == ":memory:":
        return None
    return Path(location.rstrip("/") + ".server.json")


@contextlib.contextmanager
def announced(settings: Settings) -> Iterator[None]:
    """Write the server file for the duration of `serve`."""
    path = server_file(settings)
    if path is None:
        yield
        return
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if host == "::" or ":" in host else host  # noqa: S104 - compared, not bound
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": f"http://{host}:{settings.server.port}", "pid": os.getpid()}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_server(settings: Settings, explicit: str | None) -> str | None:
    """The URL of the server to send work to: explicit, else the live server holding the embedded store."""
    if explicit:
        return explicit.rstrip("/")
    path = server_file(settings)
    if path is None:
        return None
    try:
        announced_ = json.loads(path.read_text())
        url, pid = str(announced_["url"]), int(announced_["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _alive(pid) else None


class RemoteServer:
    """The few API calls the CLI makes, with errors as ChatbotError (the CLI prints them, no traceback)."""

    def __init__(self, url: str, *, api_key: str | None, tenant: str | None, timeout: float = 300) -> None:
        headers = {"X-Chatbot-Tenant": tenant} if tenant else {}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = url
        self._client = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, trust_env=False)

    async def __aenter__(self) -> RemoteServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            r = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError:
            raise ConfigError(f"The server at {self.url} cannot be reached.") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code >= 400:
            err = body.get("error") if isinstance(body, dict) else None
            if isinstance(err, dict):
                raise ChatbotError(str(err.get("message")), code=str(err.get("code")))
            raise ChatbotError(f"The server answered HTTP {r.status_code}.", code="server_error")
        return body if isinstance(body, dict) else {}

    async def wait_job(self, job: dict[str, Any]) -> dict[str, Any]:
        while job.get("status") not in TERMINAL:
            await asyncio.sleep(0.25)
            job = await self._call("GET", f"/v1/ingest/jobs/{job['job_id']}")
        return job

    async def upload(
        self, name: str, data: bytes, metadata: dict[str, Any] | None = None
    ) -> list[IngestResult]:
        """One file (with its metadata); a job (202) is followed to its end. Per-file errors raise."""
        form = {"metadata": json.dumps(metadata)} if metadata else None
        body = await self._call("POST", "/v1/documents", files=[("file", (name, data))], data=form)
        if "job_id" in body:
            body = await self.wait_job(body)
            if body.get("errors"):
                err = body["errors"][0]
                raise ChatbotError(str(err.get("message")), code=str(err.get("code")))
            return [_result(r) for r in body.get("results", [])]
        return [_result(r) for r in body.get("documents", [])]

    async def put(self, source: str, data: bytes) -> IngestResult:
        """sync.Sink.put: the server names the document by the file's base name."""
        results = await self.upload(source, data)
        if not results:
            raise ChatbotError(f"The server ingested nothing from {source}.", code="server_error")
        return results[0]

    async def remove(self, doc_id: str) -> int:
        try:
            body = await self._call("DELETE", f"/v1/documents/{doc_id}")
        except ChatbotError as exc:
            if exc.code == "unknown_document":
                return 0
            raise
        return int(body.get("deleted_chunks", 0))

    async def sync_url(self, url: str) -> dict[str, Any]:
        return await self.wait_job(await self._call("POST", "/v1/ingest/sync", json={"url": url}))

    async def documents(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/v1/documents")).get("documents", []))

    async def reindex(self, embedder: str) -> dict[str, Any]:
        """Start a reindex job (an admin key) and follow it to its end; a failed one raises its error."""
        job = await self.wait_job(await self._call("POST", "/v1/admin/reindex", json={"embedder": embedder}))
        if job.get("status") != "done":
            err = job.get("error") or {"code": "cancelled", "message": "The reindex was cancelled."}
            raise ChatbotError(str(err.get("message")), code=str(err.get("code")))
        return job


async def reindex_command(settings: Settings, requested: str | None, server: Any) -> None:
    """`python -m chatbot reindex`: through the server holding the store (a job), else here on the store."""
    from chatbot.cli_ingest import through_store_or_server
    from chatbot.ingest.jobs import JobProgress, new_job_id
    from chatbot.ingest.reindex import serving_settings, target_embedder

    target = target_embedder(settings, requested)
    print(f"reindex: re-embedding every chunk with {target}", file=sys.stderr)

    async def remote(api: RemoteServer) -> None:
        job = await api.reindex(target)
        print(f"reindex: {job.get('written', 0)} chunks re-embedded; the server now embeds with {target}")

    async def local(services: Any) -> None:
        progress = JobProgress(id=new_job_id(), tenant=settings.default_tenant, kind="reindex")

        async def notify() -> None:
            if progress.written and progress.written % 1024 < services.reindexer.batch_size:
                print(f"reindex: {progress.written} chunks", file=sys.stderr)

        await services.reindexer.run(target, progress, notify)
        print(f"reindex: {progress.written} chunks re-embedded; the collection now records {target}")

    await through_store_or_server(serving_settings(settings), server, None, local, remote)


def _result(raw: dict[str, Any]) -> IngestResult:
    return IngestResult(
        doc_id=str(raw["doc_id"]),
        source=str(raw["source"]),
        title=str(raw.get("title", "")),
        chunks=int(raw.get("chunks", 0)),
        written=int(raw.get("written", 0)),
        unchanged=bool(raw.get("unchanged", False)),
    )
