"""Ingestion jobs at scale: two app instances submit and read jobs through Redis (saq), and a separate
`python -m chatbot worker` process runs them. Progress, SSE and cancel work from either instance."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.settings import RedisSettings
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.redis.conftest import RedisServer
from tests.serving import serve_app
from tests.transport.clients import parse_sse

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
TENANT = {"X-Chatbot-Tenant": "redis-jobs"}


def worker_env(redis_settings: RedisSettings, store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CHATBOT_EMBEDDING_PROVIDER="local",
        CHATBOT_CHAT_PROVIDER="extractive",
        CHATBOT_QDRANT__PATH=str(store),
        CHATBOT_REDIS__URL=str(redis_settings.url),
        CHATBOT_REDIS__KEY_PREFIX=redis_settings.key_prefix,
        CHATBOT_JOBS__BACKEND="redis",
        CHATBOT_SERVER__UVLOOP="false",
        CHATBOT_LOG_LEVEL="WARNING",
    )
    return env


class WorkerProcess:
    """`python -m chatbot worker` in a subprocess with its own embedded store."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatbot", "worker"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.code: int | None = None

    def stop(self) -> int | None:
        """SIGTERM, and the exit code; None (after a kill) when it did not stop within 30 s. Idempotent."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return self.code


@pytest.fixture
def worker(redis_settings: RedisSettings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker process; stopped with SIGTERM, which it must answer by exiting."""
    handle = WorkerProcess(worker_env(redis_settings, tmp_path / "worker-qdrant"), tmp_path / "worker.log")
    try:
        yield handle
    finally:
        code = handle.stop()
    # -15: SIGTERM came while the worker was still loading its model, before saq took over the signal
    assert code in (0, -signal.SIGTERM), handle.log_path.read_text()


@pytest.fixture
async def instances(
    redis_settings: RedisSettings, offline_providers: Providers, guide_store: VectorStore
) -> AsyncIterator[tuple[str, str]]:
    """Two app instances whose jobs go to Redis (their own store is unused by jobs)."""
    settings = make_settings(
        redis=redis_settings.model_dump(),
        jobs={"backend": "redis", "upload_job_bytes": 64},
        limits={"max_files_per_upload": 100, "max_upload_bytes": 1 << 20},
    )
    async with contextlib.AsyncExitStack() as stack:
        urls = []
        for _ in range(2):
            svc = await stack.enter_async_context(
                build_services(settings, providers=offline_providers, store=guide_store)
            )
            urls.append(await stack.enter_async_context(serve_app(create_app(settings, services=svc))))
        yield urls[0], urls[1]


def files(count: int, paragraphs: int = 1) -> list[tuple[str, tuple[str, bytes, str]]]:
    def text(n: int) -> bytes:
        body = "\n\n".join(
            f"Redis job document {n}, paragraph {p}: " + "words " * 60 for p in range(paragraphs)
        )
        return f"# Doc {n}\n\n{body}\n".encode()

    return [("file", (f"r{n}.md", text(n), "text/markdown")) for n in range(count)]


async def wait_end(url: str, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        for _ in range(1200):  # the worker loads its model first
            body: dict[str, Any] = (await client.get(f"/v1/ingest/jobs/{job_id}")).json()
            if body["status"] in ("done", "failed", "cancelled"):
                return body
            await asyncio.sleep(0.1)
    raise AssertionError("the job did not end")


def documents_in(env: dict[str, str], tenant: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "chatbot", "documents", "list", "--tenant", tenant],
        env={k: v for k, v in env.items() if not k.startswith("CHATBOT_JOBS__")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestRedisJobs:
    async def test_a_job_runs_on_the_worker_and_is_visible_everywhere(
        self, instances: tuple[str, str], worker: WorkerProcess
    ) -> None:
        """Submitted on instance A, run by the worker process, followed to its end on instance B (JSON, SSE)."""
        a, b = instances
        async with httpx.AsyncClient(base_url=a, headers=TENANT) as client:
            r = await client.post("/v1/documents", files=files(3))
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        async with httpx.AsyncClient(base_url=b, headers=TENANT, timeout=120) as client:
            events = parse_sse((await client.get(f"/v1/ingest/jobs/{job_id}/events")).text)
            other = await client.get(f"/v1/ingest/jobs/{job_id}", headers={"X-Chatbot-Tenant": "someone"})
        assert events[-1]["event"] == "done", events[-1]
        assert events[-1]["data"]["files_done"] == 3
        assert [r["source"] for r in events[-1]["data"]["results"]] == ["r0.md", "r1.md", "r2.md"]
        assert other.status_code == 404

    async def test_cancel_from_another_instance(
        self, instances: tuple[str, str], worker: WorkerProcess
    ) -> None:
        """A job submitted on A and cancelled on B ends cancelled."""
        a, b = instances
        async with httpx.AsyncClient(base_url=a, headers=TENANT) as client:
            job_id = (await client.post("/v1/documents", files=files(20))).json()["job_id"]
        async with httpx.AsyncClient(base_url=b, headers=TENANT, timeout=30) as client:
            r = await client.post(f"/v1/ingest/jobs/{job_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        assert (await wait_end(a, job_id, TENANT))["status"] == "cancelled"

    async def test_cancel_a_running_job(self, instances: tuple[str, str], worker: WorkerProcess) -> None:
        """A job the worker is running stops at cancel: cancelled, with files left undone."""
        a, b = instances
        async with httpx.AsyncClient(base_url=a, headers=TENANT) as client:
            job_id = (await client.post("/v1/documents", files=files(100, paragraphs=20))).json()["job_id"]
            for _ in range(1200):
                body = (await client.get(f"/v1/ingest/jobs/{job_id}")).json()
                if body["files_done"] >= 1:
                    break
                await asyncio.sleep(0.1)
        assert body["status"] == "running", body
        async with httpx.AsyncClient(base_url=b, headers=TENANT, timeout=30) as client:
            r = await client.post(f"/v1/ingest/jobs/{job_id}/cancel")
        assert r.json()["status"] == "cancelled"
        assert r.json()["files_done"] < 100


class TestWorkerStore:
    async def test_the_worker_wrote_to_its_store(
        self, instances: tuple[str, str], worker: WorkerProcess
    ) -> None:
        """After the worker stops, its embedded store holds the job's documents (read by the CLI)."""
        async with httpx.AsyncClient(base_url=instances[0], headers=TENANT) as client:
            job_id = (await client.post("/v1/documents", files=files(2))).json()["job_id"]
        assert (await wait_end(instances[1], job_id, TENANT))["status"] == "done"
        assert await asyncio.to_thread(worker.stop) == 0, worker.log_path.read_text()
        listed = await asyncio.to_thread(documents_in, worker.env, "redis-jobs")
        assert "r0.md" in listed
        assert "r1.md" in listed


def test_redis_server_fixture_is_real(redis_server: RedisServer) -> None:
    """The ring runs against a real redis-server process."""
    assert redis_server.process is not None
    assert redis_server.process.poll() is None
