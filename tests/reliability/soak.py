"""A bounded soak: `python -m chatbot serve` in a subprocess (model and embeddings on a fake upstream
process), steady load with connects, disconnects, stops and resumes over websocket and SSE, and the server's
own RSS, open file descriptors and asyncio tasks read before and after (/proc/<pid>, GET /debug/looplag).

Used by tests/reliability/test_soak.py (SOAK_SECONDS, 45 s of load in CI; 600 for the full run).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.serving import free_port
from tests.transport.clients import parse_sse

ROOT = Path(__file__).resolve().parents[2]
END = {"done", "stopped", "error"}
GRACE_SECONDS = 2.0
# hypercorn's websocket ping loop (interval = stream.heartbeat_seconds) outlives its closed websocket until
# its next wake-up, holding the connection's tasks that long: a short interval keeps settling short
PING_SECONDS = 3.0
# every ask starts a conversation, kept in memory up to limits.max_conversations (10,000 by default, a
# designed bound of ~15 MB here); a small cap is reached during warm-up, so growth after it would be a leak
MAX_CONVERSATIONS = 300
ACTIONS = (
    ("ws_answer", 3),
    ("ws_three_turns", 1),
    ("ws_stop", 2),
    ("ws_disconnect_resume", 2),
    ("ws_abandon", 1),
    ("sse_answer", 2),
    ("sse_disconnect_resume", 2),
    ("http_stop", 1),
    ("rest_answer", 1),
    ("openai_answer", 1),
)


@dataclass(frozen=True)
class Sample:
    rss_kb: int
    fds: int
    upstream_fds: (
        int  # of fds: sockets to the fake upstream (the SDK's keep-alive pool, bounded by its limits)
    )
    tasks: int
    at: float = field(default_factory=time.monotonic)

    @property
    def own_fds(self) -> int:
        return self.fds - self.upstream_fds

    def to_dict(self) -> dict[str, float]:
        return {
            "rss_mb": round(self.rss_kb / 1024, 1),
            "fds": self.fds,
            "upstream_fds": self.upstream_fds,
            "tasks": self.tasks,
        }


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None, status
    return int(found.group(1))


def open_fds(pid: int, upstream_port: int) -> tuple[int, int]:
    """(open fds, of which TCP sockets connected to `upstream_port`), from /proc/<pid>/fd and net/tcp."""
    sockets = set()
    fds = os.listdir(f"/proc/{pid}/fd")
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
    upstream = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == upstream_port and cols[9] in sockets:
                    upstream += 1
    return len(fds), upstream


@dataclass
class Server:
    url: str
    process: asyncio.subprocess.Process
    upstream_port: int

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"

    async def sample(self, client: httpx.AsyncClient) -> Sample:
        tasks = (await client.get(f"{self.url}/debug/looplag")).json()["tasks"]
        fds, upstream = open_fds(self.process.pid, self.upstream_port)
        return Sample(rss_kb(self.process.pid), fds, upstream, int(tasks))


@contextlib.asynccontextmanager
async def fake_upstream_process(*, token_ms: float = 4, tokens: int = 40) -> AsyncIterator[str]:
    """`python -m tests.fakes.upstream` on a free port; yields its OpenAI base URL."""
    args = [
        "--port",
        "0",
        "--first-token-ms",
        "20",
        "--token-ms",
        str(token_ms),
        "--tokens",
        str(tokens),
        "--dimensions",
        "256",
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.upstream", *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        found = re.search(r"OpenAI base_url (\S+),", line)
        assert found is not None, line
        yield found.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)


@contextlib.asynccontextmanager
async def served(
    openai_base_url: str, data_dir: Path, env_overrides: dict[str, str] | None = None
) -> AsyncIterator[Server]:
    """`python -m chatbot serve` with the openai provider on the fake; ingests the user guide on start.
    `env_overrides` adds or replaces environment variables (settings) of the server."""
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_", "COHERE_", "CO_API"))
    }
    env.update(
        OPENAI_API_KEY="sk-soak",
        CHATBOT_OPENAI__BASE_URL=openai_base_url,
        CHATBOT_OPENAI__EMBEDDING_DIMENSIONS="256",
        CHATBOT_OPENAI__MAX_RETRIES="0",
        CHATBOT_EMBEDDING_PROVIDER="openai",
        CHATBOT_CHAT_PROVIDER="openai",
        CHATBOT_QDRANT__PATH=str(data_dir / "qdrant"),
        CHATBOT_STREAM__GRACE_SECONDS=str(GRACE_SECONDS),
        CHATBOT_LIMITS__MAX_CONVERSATIONS=str(MAX_CONVERSATIONS),
        CHATBOT_STREAM__HEARTBEAT_SECONDS=str(PING_SECONDS),
        CHATBOT_LOG_LEVEL="WARNING",
        OPENBLAS_NUM_THREADS="1",
    )
    env.update(env_overrides or {})
    log = (data_dir / "server.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatbot",
        "serve",
        "--port",
        str(port),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                assert proc.returncode is None, (data_dir / "server.log").read_text()[-3000:]
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError("the server did not get ready in 30 s")
        yield Server(url, proc, int(openai_base_url.rsplit(":", 1)[1].split("/")[0]))
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        log.close()


class Load:
    """Clients that each repeat seeded actions until the deadline; tallies outcomes and unexpected results."""

    def __init__(self, server: Server, http: httpx.AsyncClient, seed: int) -> None:
        self.server = server
        self.http = http
        self.seed = seed
        self.tally: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []

    async def run(self, clients: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(self._client(random.Random(f"{self.seed}/{i}"), deadline) for i in range(clients))
        )

    async def _client(self, rng: random.Random, deadline: float) -> None:
        names = [name for name, _ in ACTIONS]
        weights = [w for _, w in ACTIONS]
        while time.monotonic() < deadline:
            action = rng.choices(names, weights)[0]
            try:
                async with asyncio.timeout(30):
                    outcome = await getattr(self, action)(rng)
            except Exception as exc:  # record and go on: the soak measures resources; problems fail the test
                self.problems.append(f"{action}: {exc!r}"[:300])
                outcome = "exception"
            self.tally[f"{action}:{outcome}"] += 1

    def _question(self, rng: random.Random) -> str:
        return f"How do I resume an answer after a disconnect? ({rng.randrange(10**6)})"

    async def _ask(self, ws: Any, rng: random.Random) -> None:
        await ws.send(json.dumps({"type": "ask", "message": self._question(rng)}))

    async def _until_end(self, ws: Any) -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] in END:
                return frame

    async def ws_answer(self, rng: random.Random) -> str:
        async with websockets.connect(self.server.ws_url) as ws:
            await self._ask(ws, rng)
            return str((await self._until_end(ws))["type"])

    async def ws_three_turns(self, rng: random.Random) -> str:
        async with websockets.connect(self.server.ws_url) as ws:
            ends = []
            for _ in range(3):
                await self._ask(ws, rng)
                ends.append(str((await self._until_end(ws))["type"]))
            return ",".join(sorted(set(ends)))

    async def ws_stop(self, rng: random.Random) -> str:
        async with websockets.connect(self.server.ws_url) as ws:
            await self._ask(ws, rng)
            while (frame := json.loads(await ws.recv()))["type"] != "token":
                if frame["type"] in END:
                    return str(frame["type"])
            await ws.send(json.dumps({"type": "stop"}))
            return str((await self._until_end(ws))["type"])

    async def ws_disconnect_resume(self, rng: random.Random) -> str:
        async with websockets.connect(self.server.ws_url) as ws:
            await self._ask(ws, rng)
            last: dict[str, Any] = {}
            for _ in range(rng.randint(1, 6)):
                last = json.loads(await ws.recv())
                if last["type"] in END:
                    return str(last["type"])
        await asyncio.sleep(rng.uniform(0, 0.3))
        async with websockets.connect(self.server.ws_url) as ws:
            await ws.send(
                json.dumps({"type": "resume", "message_id": last["message_id"], "after": last["seq"]})
            )
            frame = await self._until_end(ws)
            return "resumed_" + str(frame.get("code", frame["type"]))

    async def ws_abandon(self, rng: random.Random) -> str:
        async with websockets.connect(self.server.ws_url) as ws:
            await self._ask(ws, rng)
            await ws.recv()
        return "left"  # the answer runs on for the grace period, then is cancelled

    async def _sse_stream(self, rng: random.Random) -> AsyncIterator[dict[str, Any]]:
        payload = {"message": self._question(rng), "stream": True}
        async with self.http.stream("POST", f"{self.server.url}/v1/chat", json=payload) as response:
            assert response.status_code == 200, response.status_code
            buffer = ""
            async for text in response.aiter_text():
                buffer += text
                *blocks, buffer = buffer.split("\n\n")
                for event in parse_sse("\n\n".join(blocks)):
                    yield event

    async def sse_answer(self, rng: random.Random) -> str:
        async for event in self._sse_stream(rng):
            if event["event"] in END:
                return str(event["event"])
        return "no_end"

    async def sse_disconnect_resume(self, rng: random.Random) -> str:
        last: dict[str, Any] = {}
        events = self._sse_stream(rng)
        try:
            for _ in range(rng.randint(1, 6)):
                last = await anext(events)
                if last["event"] in END:
                    return str(last["event"])
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        message_id = last["data"]["message_id"]
        headers = {"Last-Event-ID": str(last["id"])}
        url = f"{self.server.url}/v1/chat/{message_id}/events"
        async with self.http.stream("GET", url, headers=headers) as response:
            body = (await response.aread()).decode()
        ends = [e for e in parse_sse(body) if e["event"] in END]
        return "resumed_" + (ends[-1]["event"] if ends else f"http_{response.status_code}")

    async def http_stop(self, rng: random.Random) -> str:
        events = self._sse_stream(rng)
        try:
            async for event in events:
                if event["event"] == "token":
                    message_id = event["data"]["message_id"]
                    await self.http.post(f"{self.server.url}/v1/chat/{message_id}/stop")
                if event["event"] in END:
                    return str(event["event"])
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return "no_end"

    async def rest_answer(self, rng: random.Random) -> str:
        response = await self.http.post(f"{self.server.url}/v1/chat", json={"message": self._question(rng)})
        return "done" if response.status_code == 200 else f"http_{response.status_code}"

    async def openai_answer(self, rng: random.Random) -> str:
        body = {
            "model": "chatbot",
            "messages": [{"role": "user", "content": self._question(rng)}],
            "stream": True,
        }
        async with self.http.stream("POST", f"{self.server.url}/v1/chat/completions", json=body) as response:
            raw = await response.aread()
        return "done" if raw.rstrip().endswith(b"data: [DONE]") else f"http_{response.status_code}"


KEEP_ALIVE_SECONDS = 5.0  # hypercorn's keep_alive_timeout: an idle client connection's tasks live this long


async def settle(server: Server, client: httpx.AsyncClient, *, floor: int | None, within: float) -> Sample:
    """Wait for detached answers to end (grace) and idle connections to close (keep-alive); then the first
    sample at or under `floor`, or, without a floor, once two samples agree."""
    await asyncio.sleep(max(GRACE_SECONDS, KEEP_ALIVE_SECONDS, PING_SECONDS) + 1)
    deadline = time.monotonic() + within
    sample = await server.sample(client)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = await server.sample(client)
        if (floor is not None and now.tasks <= floor) or (floor is None and now.tasks == sample.tasks):
            return now
        sample = now
    return sample
