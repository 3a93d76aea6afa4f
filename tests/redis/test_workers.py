"""`python -m chatbot serve --workers 2` (issue 15, target 3): two hypercorn worker processes on one port, state on
a real redis-server, vectors in read-only copies of an embedded collection (no Qdrant server binary is
reachable here). Which worker holds a connection is read from /proc (the server-side socket's inode among each
worker's file descriptors), so nothing in the API has to expose a pid."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import websockets

from chatbot.settings import RedisSettings
from chatbot.stores.redis.client import RedisConnection
from chatbot.stores.redis.eventlog import RedisEventLog
from tests.redis.conftest import RedisServer
from tests.reliability.soak import Server, fake_upstream_process, served

SHUTDOWN_SECONDS = 6.0
MARGIN_SECONDS = 3.0  # two interpreters exit, the supervisor joins them


def workers_of(supervisor: int) -> list[int]:
    """The worker processes the supervisor spawned (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def owner_of(local_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the server side of the TCP connection from 127.0.0.1:`local_port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[2].rsplit(":", 1)[1], 16) == local_port:  # remote end of a server-side socket
            inodes.add(cols[9])
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] in inodes:
                    return pid
    return None


@contextlib.asynccontextmanager
async def connection_on(server: Server, pid: int, pids: list[int]) -> AsyncIterator[Any]:
    """A websocket that the kernel handed to worker `pid` (reconnects until it lands there: a worker still
    starting accepts nothing yet)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ws = await websockets.connect(server.ws_url, open_timeout=10)
        await ws.send(json.dumps({"type": "ping"}))
        await ws.recv()  # accepted and answered: the socket is in its worker's fd table
        if owner_of(ws.local_address[1], pids) == pid:
            try:
                yield ws
            finally:
                await ws.close()
            return
        await ws.close()
        await asyncio.sleep(0.05)
    raise AssertionError(f"no connection landed on worker {pid} in 30 s")


async def until_end(ws: Any) -> dict[str, Any]:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] in ("done", "stopped", "error"):
            return dict(frame)


@contextlib.asynccontextmanager
async def two_workers(tmp_path: Path, redis_server: RedisServer, **env: str) -> AsyncIterator[Server]:
    """The user guide ingested by one process, then served by a supervisor and two workers over Redis."""
    async with fake_upstream_process(token_ms=60, tokens=40) as base_url:
        shared = {
            "CHATBOT_REDIS__URL": redis_server.url,
            "CHATBOT_REDIS__KEY_PREFIX": env.pop("CHATBOT_REDIS__KEY_PREFIX", "w" + os.urandom(6).hex()),
            "CHATBOT_JOBS__BACKEND": "redis",
            "CHATBOT_SERVER__SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
        }
        async with served(base_url, tmp_path, shared):
            pass  # one process ingests docs/guide on start, then exits: the collection the workers copy
        workers = {"CHATBOT_SERVER__WORKERS": "2", "CHATBOT_SERVER__EMBEDDED_REPLICAS": "true"}
        async with served(base_url, tmp_path, shared | workers | env) as server:
            yield server


async def test_a_conversation_moves_between_workers_and_quotas_are_shared(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Asked on worker A: resumed and stopped on worker B; B refuses a 2nd answer (concurrent quota 1)."""
    async with two_workers(tmp_path, redis_server, CHATBOT_QUOTAS__CONCURRENT_ANSWERS="1") as server:
        pids = workers_of(server.process.pid)
        assert len(pids) == 2, pids
        a, b = pids
        async with connection_on(server, a, pids) as on_a, connection_on(server, b, pids) as on_b:
            await on_a.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            while (frame := json.loads(await on_a.recv()))["type"] != "token":
                assert frame["type"] not in ("done", "stopped", "error"), frame
            message_id = frame["message_id"]

            await on_b.send(json.dumps({"type": "ask", "message": "And how do I resume one?"}))
            refused = json.loads(await on_b.recv())
            assert refused["type"] == "error", refused
            assert refused["code"] == "rate_limited", refused
            assert "1 answers running" in refused["message"]  # counted on the other worker, in Redis

            await on_b.send(json.dumps({"type": "resume", "message_id": message_id, "after": frame["seq"]}))
            resumed = json.loads(await on_b.recv())
            assert resumed["message_id"] == message_id, resumed
            assert resumed["seq"] > frame["seq"], resumed
            await on_b.send(json.dumps({"type": "stop", "message_id": message_id}))
            assert (await until_end(on_a))["type"] == "stopped"
            assert (await until_end(on_b))["type"] == "stopped"

            await on_b.send(json.dumps({"type": "ask", "message": "And how do I resume one?"}))
            assert (await until_end(on_b))["type"] == "done"  # the quota's slot came back through Redis


async def test_ingestion_is_refused_by_read_only_replicas(tmp_path: Path, redis_server: RedisServer) -> None:
    """A document upload to a worker serving a read-only copy gets 409 store_read_only."""
    async with two_workers(tmp_path, redis_server) as server, httpx.AsyncClient(timeout=30) as client:
        files = {"files": ("note.md", b"# Note\n\nWorkers serve copies.", "text/markdown")}
        response = await client.post(f"{server.url}/v1/documents", files=files)
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "store_read_only"


async def finished_in_redis(redis: RedisSettings, message_id: str, after: int) -> str:
    """The type of the last event the answer's log in Redis holds after `after` (what its worker finished)."""
    conn = RedisConnection(redis)
    try:
        log = RedisEventLog(conn, max_events=4096, expire_seconds=30, lease_seconds=15)
        last = ""
        async with asyncio.timeout(10):
            async for _seq, event in log.read(message_id, "public", after):
                last = event.type
        return last
    finally:
        await conn.aclose()


async def test_sigterm_drains_both_workers(tmp_path: Path, redis_server: RedisServer) -> None:
    """An answer streaming on each worker, SIGTERM to the supervisor: both answers run to their end (the log in
    Redis ends with done), each client gets its end or a 1012 close, and every process exits in the budget."""
    prefix = "w" + os.urandom(6).hex()
    env = {"CHATBOT_REDIS__KEY_PREFIX": prefix, "CHATBOT_STREAM__GRACE_SECONDS": "30"}
    async with two_workers(tmp_path, redis_server, **env) as server:
        pids = workers_of(server.process.pid)
        async with connection_on(server, pids[0], pids) as on_a, connection_on(server, pids[1], pids) as on_b:
            asked = []
            for ws in (on_a, on_b):
                await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
                while (frame := json.loads(await ws.recv()))["type"] != "token":
                    pass
                asked.append((frame["message_id"], frame["seq"]))
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            for ws in (
                on_a,
                on_b,
            ):  # the answer's end, or the close that tells the client to resume elsewhere
                with contextlib.suppress(websockets.ConnectionClosed):
                    assert (await until_end(ws))["type"] == "done"
                assert ws.close_code in (None, 1000, 1012), ws.close_code
            code = await asyncio.wait_for(server.process.wait(), SHUTDOWN_SECONDS + MARGIN_SECONDS)
            assert code == 0
            assert time.monotonic() - started < SHUTDOWN_SECONDS + MARGIN_SECONDS
            assert not running(pids)
    redis = RedisSettings(url=redis_server.url, key_prefix=prefix)
    assert [await finished_in_redis(redis, message_id, seq) for message_id, seq in asked] == ["done", "done"]
