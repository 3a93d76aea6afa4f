"""Ingestion jobs over HTTP: big uploads answer 202 and run on, progress as JSON and SSE, cancel, tenants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import parse_sse

TENANT = {"X-Chatbot-Tenant": "jobs-a"}
OTHER = {"X-Chatbot-Tenant": "jobs-b"}


def markdown(n: int, paragraphs: int = 3) -> bytes:
    body = "\n\n".join(
        f"Paragraph {i} of file {n} talks about subject {n * 31 + i}." for i in range(paragraphs)
    )
    return f"# File {n}\n\n{body}\n".encode()


@pytest.fixture
async def job_services(offline_providers: Providers, guide_store: VectorStore) -> AsyncIterator[Services]:
    settings = make_settings(jobs={"upload_job_bytes": 64, "concurrency": 1})
    async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
        yield svc


@pytest.fixture
async def job_url(job_services: Services) -> AsyncIterator[str]:
    async with serve_app(create_app(job_services.settings, services=job_services)) as url:
        yield url


async def wait_done(client: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    for _ in range(400):
        body: dict[str, Any] = (await client.get(f"/v1/ingest/jobs/{job_id}", headers=headers)).json()
        if body["status"] in ("done", "failed", "cancelled"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not end")


def files(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"doc{n}.md", markdown(n), "text/markdown")) for n in range(count)]


class TestUploadJobs:
    async def test_small_upload_answers_at_once(self, job_url: str) -> None:
        """An upload under jobs.upload_job_bytes is ingested in the request: 201 with the results."""
        async with httpx.AsyncClient(base_url=job_url) as client:
            r = await client.post("/v1/documents", files=[("file", ("s.md", b"# S\n\nx", "text/markdown"))])
        assert r.status_code == 201, r.text
        assert r.json()["documents"][0]["source"] == "s.md"

    async def test_big_upload_is_a_job_with_progress(self, job_url: str) -> None:
        """A big upload answers 202 with a job id and Location; the job ends done with per-file results."""
        async with httpx.AsyncClient(base_url=job_url, headers=TENANT) as client:
            r = await client.post("/v1/documents", files=files(3))
            assert r.status_code == 202, r.text
            job = r.json()
            assert r.headers["location"] == f"/v1/ingest/jobs/{job['job_id']}"
            assert job["kind"] == "upload"
            done = await wait_done(client, job["job_id"], TENANT)
            docs = (await client.get("/v1/documents")).json()["documents"]
        assert done["status"] == "done"
        assert (done["files_total"], done["files_done"]) == (3, 3)
        assert done["chunks"] >= 3
        assert done["chunks_per_second"] > 0
        assert {"doc0.md", "doc1.md", "doc2.md"} <= {d["source"] for d in docs}

    async def test_a_bad_file_is_an_error_and_the_job_goes_on(self, job_url: str) -> None:
        """A file that cannot be read is listed in errors with its code; the other files are ingested."""
        bad = ("file", ("bad.pdf", b"not a pdf at all" * 10, "application/pdf"))
        async with httpx.AsyncClient(base_url=job_url, headers=TENANT) as client:
            job = (await client.post("/v1/documents", files=[bad, *files(1)])).json()
            done = await wait_done(client, job["job_id"], TENANT)
        assert done["status"] == "done"
        assert [e["source"] for e in done["errors"]] == ["bad.pdf"]
        assert done["errors"][0]["code"]
        assert [r["source"] for r in done["results"]] == ["doc0.md"]

    async def test_sse_streams_progress_until_the_end(self, job_url: str) -> None:
        """GET .../events streams progress events and ends with the job's terminal status."""
        async with httpx.AsyncClient(base_url=job_url, headers=TENANT) as client:
            job = (await client.post("/v1/documents", files=files(2))).json()
            r = await client.get(f"/v1/ingest/jobs/{job['job_id']}/events")
        assert r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.text)
        assert events[-1]["event"] == "done"
        assert all(e["event"] == "progress" for e in events[:-1])
        assert events[-1]["data"]["files_done"] == 2

    async def test_cancel_stops_the_job(self, job_services: Services, job_url: str) -> None:
        """POST .../cancel ends a running job as cancelled, with fewer files done than sent."""
        async with httpx.AsyncClient(base_url=job_url, headers=TENANT) as client:
            job = (await client.post("/v1/documents", files=files(15))).json()
            r = await client.post(f"/v1/ingest/jobs/{job['job_id']}/cancel")
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "cancelled"
            done = await wait_done(client, job["job_id"], TENANT)
        assert done["status"] == "cancelled"
        assert done["files_done"] < 15

    async def test_job_survives_the_client_leaving(self, job_url: str) -> None:
        """A client that leaves the SSE stream at once does not stop the job."""
        async with httpx.AsyncClient(base_url=job_url, headers=TENANT) as client:
            job = (await client.post("/v1/documents", files=files(3))).json()
            async with client.stream("GET", f"/v1/ingest/jobs/{job['job_id']}/events") as r:
                async for _ in r.aiter_bytes():
                    break
            done = await wait_done(client, job["job_id"], TENANT)
        assert done["status"] == "done"
        assert done["files_done"] == 3


class TestJobTenancy:
    async def test_another_tenants_job_is_unknown(self, job_url: str) -> None:
        """Another tenant's job id is 404 for status, events and cancel (never 403: ids do not leak)."""
        async with httpx.AsyncClient(base_url=job_url) as client:
            job = (await client.post("/v1/documents", files=files(2), headers=TENANT)).json()
            for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
                r = await client.request(method, f"/v1/ingest/jobs/{job['job_id']}{path}", headers=OTHER)
                assert r.status_code == 404, (path, r.text)
                assert r.json()["error"]["code"] == "unknown_job"
            await wait_done(client, job["job_id"], TENANT)

    async def test_unknown_job_is_404(self, job_url: str) -> None:
        """A made-up job id is 404 unknown_job."""
        async with httpx.AsyncClient(base_url=job_url) as client:
            r = await client.get("/v1/ingest/jobs/job_" + "0" * 32)
        assert r.status_code == 404


class TestSyncRoute:
    async def test_folder_sync_refused_without_roots(self, job_url: str, tmp_path: Any) -> None:
        """POST /v1/ingest/sync with a path is 403 when no jobs.sync_roots are configured."""
        async with httpx.AsyncClient(base_url=job_url) as client:
            r = await client.post("/v1/ingest/sync", json={"path": str(tmp_path)})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "sync_not_allowed"

    async def test_sync_needs_exactly_one_target(self, job_url: str) -> None:
        """A sync body with both url and path (or neither) is 400 invalid_sync."""
        async with httpx.AsyncClient(base_url=job_url) as client:
            both = await client.post("/v1/ingest/sync", json={"url": "http://x", "path": "."})
            neither = await client.post("/v1/ingest/sync", json={})
        assert both.status_code == neither.status_code == 400

    async def test_folder_sync_under_an_allowed_root(
        self, offline_providers: Providers, guide_store: VectorStore, tmp_path: Any
    ) -> None:
        """A folder under jobs.sync_roots is mirrored by a job; one outside (via ..) is 403."""
        root = tmp_path / "root"
        (root / "docs").mkdir(parents=True)
        (root / "docs" / "a.md").write_bytes(markdown(1))
        settings = make_settings(jobs={"sync_roots": [str(root)], "state_dir": str(tmp_path / "state")})
        async with (
            build_services(settings, providers=offline_providers, store=guide_store) as svc,
            serve_app(create_app(settings, services=svc)) as url,
            httpx.AsyncClient(base_url=url, headers={"X-Chatbot-Tenant": "jobs-sync"}) as client,
        ):
            outside = await client.post("/v1/ingest/sync", json={"path": str(root / "docs" / ".." / "..")})
            r = await client.post("/v1/ingest/sync", json={"path": str(root / "docs")})
            assert r.status_code == 202, r.text
            done = await wait_done(client, r.json()["job_id"], {"X-Chatbot-Tenant": "jobs-sync"})
        assert outside.status_code == 403
        assert done["status"] == "done"
        assert [x["source"] for x in done["results"]] == ["a.md"]

    async def test_url_sync_to_a_private_address_fails_the_job(self, job_url: str) -> None:
        """A URL job aimed at this server's own loopback address ends failed with address_not_allowed."""
        async with httpx.AsyncClient(base_url=job_url) as client:
            r = await client.post("/v1/ingest/sync", json={"url": job_url + "/healthz"})
            assert r.status_code == 202, r.text
            done = await wait_done(client, r.json()["job_id"], {})
        assert done["status"] == "failed"
        assert done["error"]["code"] == "address_not_allowed"
