"""A real redis-server for the scale-out ring, and two app instances sharing it.

The server is started once per session (`redis-server --port <free> --save '' --appendonly no`); every test
gets its own key prefix, so tests never see each other's keys. A missing binary fails the ring loudly:
run `bash scripts/provision.sh` (CI does, through `make test`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from redis.asyncio import Redis

from chatbot.app import create_app
from chatbot.providers.openai_models import OpenAIChatModel, build_openai_client
from chatbot.providers.registry import Providers
from chatbot.settings import OpenAISettings, RedisSettings
from chatbot.stores.base import VectorStore
from chatbot.stores.redis.client import CLIENT_NAME, RedisConnection
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.fakes.scripting import Latency, Reply
from tests.fakes.upstream import FakeUpstream
from tests.serving import free_port, serve_app


class RedisServer:
    """One redis-server process on 127.0.0.1 (no persistence); stop() and start() again keep the port."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        args += ["--dir", str(self.directory)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run `bash scripts/provision.sh` (root installs it via apt; "
            "CI does this in `make test`)",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server a test may stop and start (outages) without disturbing the others."""
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def redis_settings(redis_server: RedisServer, prefix: str) -> RedisSettings:
    return RedisSettings(url=redis_server.url, key_prefix=prefix, timeout=2.0, lease_seconds=5.0)


ConnectionFactory = Callable[..., contextlib.AbstractAsyncContextManager[RedisConnection]]


@pytest.fixture
def connect(redis_settings: RedisSettings) -> ConnectionFactory:
    """Open a RedisConnection (one per simulated instance) with these settings plus overrides."""

    @contextlib.asynccontextmanager
    async def open_(**overrides: Any) -> AsyncIterator[RedisConnection]:
        conn = RedisConnection(redis_settings.model_copy(update=overrides))
        try:
            yield conn
        finally:
            await conn.aclose()

    return open_


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client for looking at keys and clients from outside the app."""
    client = Redis.from_url(redis_server.url, client_name="test-admin", protocol=2)
    yield client
    await client.aclose()


async def app_clients(admin: Redis) -> int:
    """Connections the app's clients hold on the server right now."""
    return sum(1 for c in await admin.client_list() if c.get("name") == CLIENT_NAME)


async def wait_app_clients_closed(admin: Redis) -> None:
    for _ in range(100):
        if await app_clients(admin) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{await app_clients(admin)} redis connections of the app are still open")


@dataclass
class Instance:
    name: str
    url: str
    services: Services
    app: Quart

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"


@dataclass
class Pair:
    a: Instance
    b: Instance
    fake: FakeUpstream


PairFactory = Callable[..., contextlib.AbstractAsyncContextManager[Pair]]


@pytest.fixture
def two_instances(
    offline_providers: Providers,
    guide_store: VectorStore,
    redis_server: RedisServer,
    prefix: str,
    admin: Redis,
) -> PairFactory:
    """Two apps (A and B), each with its own services, openai SDK client and hypercorn server, sharing one
    Redis (same URL and prefix) and one fake OpenAI upstream. On exit: upstream sockets and Redis
    connections of both are closed."""

    @contextlib.asynccontextmanager
    async def build(
        *, reply: Reply | None = None, latency: Latency | None = None, **overrides: Any
    ) -> AsyncIterator[Pair]:
        async with FakeUpstream(reply=reply, latency=latency) as fake:
            async with contextlib.AsyncExitStack() as stack:
                instances = []
                for name in ("a", "b"):
                    openai_settings = OpenAISettings(
                        api_key="test-key", base_url=fake.openai_base_url, max_retries=0, timeout=5
                    )
                    client = build_openai_client(openai_settings)
                    stack.push_async_callback(client.close)
                    providers = Providers(
                        embedder=offline_providers.embedder,
                        sparse=offline_providers.sparse,
                        chat=OpenAIChatModel(client, openai_settings),
                        reranker=None,
                    )
                    settings = make_settings(
                        redis={"url": redis_server.url, "key_prefix": prefix}, **overrides
                    )
                    svc = await stack.enter_async_context(
                        build_services(settings, providers=providers, store=guide_store)
                    )
                    app = create_app(settings, services=svc)
                    url = await stack.enter_async_context(serve_app(app))
                    instances.append(Instance(name, url, svc, app))
                yield Pair(instances[0], instances[1], fake)
            for _ in range(100):
                if fake.open_connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert fake.open_connections == 0, "an upstream connection was left open"
            assert not fake.handler_errors, fake.handler_errors
        await wait_app_clients_closed(admin)

    return build
