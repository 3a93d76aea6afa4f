"""Two app instances on one Redis behave as one: resume, stop, presence, conversations and counters work
whichever instance a request reaches. Each instance is a real app on hypercorn with the real openai SDK;
both talk to one fake OpenAI upstream."""

from __future__ import annotations

import json
import logging
import statistics
import time
from typing import Any

import httpx
import pytest
import websockets

from chatbot.errors import UnknownMessage
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.stores.redis.client import RedisUnavailable
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.fakes.scripting import Latency, Reply
from tests.redis.conftest import Pair, PairFactory
from tests.serving import free_port
from tests.transport.clients import collect_until_end, parse_sse

pytestmark = pytest.mark.redis
log = logging.getLogger(__name__)

REPLY = Reply(text="One two three four five six seven eight nine ten [1].", tokens=120)
PACED = Latency(token_ms=4)
LONG = Reply(text="Streaming a long answer [1].", tokens=4000)
SLOW = Latency(token_ms=5)
STOP_TRIALS = 20


def expected_text() -> str:
    return "".join(REPLY.pieces())


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["delta"] for f in frames if f["type"] == "token")


async def first_token(ws: Any) -> dict[str, Any]:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "token":
            return frame
        assert frame["type"] in ("start", "sources"), frame


async def ask_and_drop(pair: Pair, tokens: int) -> list[dict[str, Any]]:
    """Ask on A over a websocket, keep the frames up to the `tokens`-th token, then drop the socket."""
    frames: list[dict[str, Any]] = []
    async with websockets.connect(pair.a.ws_url) as ws:
        await ws.send(json.dumps({"type": "ask", "message": "How do I resume?"}))
        while len([f for f in frames if f["type"] == "token"]) < tokens:
            frames.append(json.loads(await ws.recv()))
    return frames


def runs_on_a_only(pair: Pair, message_id: str) -> bool:
    """The answer's task lives on A; B only knows it through Redis."""
    pair.a.services.answers.get(message_id, "public")
    try:
        pair.b.services.answers.get(message_id, "public")
    except UnknownMessage:
        return True
    return False


class TestResumeOnTheOtherInstance:
    async def test_websocket_resume_on_b_gives_every_event_once(self, two_instances: PairFactory) -> None:
        """Ask on A, drop after 3 tokens, resume on B after the last seq: seqs 1..N once, the full text."""
        async with two_instances(reply=REPLY, latency=PACED) as pair:
            before = await ask_and_drop(pair, 3)
            mid, last = before[0]["message_id"], before[-1]["seq"]
            assert runs_on_a_only(pair, mid)
            async with websockets.connect(pair.b.ws_url) as ws:
                await ws.send(json.dumps({"type": "resume", "message_id": mid, "after": last}))
                after = await collect_until_end(ws)
        frames = before + after
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        assert frames[-1]["type"] == "done"
        assert text_of(frames) == expected_text()
        assert pair.fake.streams[-1].completed

    async def test_sse_last_event_id_on_b_completes_the_answer(self, two_instances: PairFactory) -> None:
        """An SSE answer from A, cut after 3 tokens, is finished by GET /events on B with Last-Event-ID."""
        async with two_instances(reply=REPLY, latency=PACED) as pair:
            before: list[dict[str, Any]] = []
            async with (
                httpx.AsyncClient(base_url=pair.a.url) as a,
                a.stream("POST", "/v1/chat", json={"message": "How do I resume?", "stream": True}) as r,
            ):
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        before.append(json.loads(line[6:]))
                        if len([f for f in before if f["type"] == "token"]) >= 3:
                            break
            mid, last = before[0]["message_id"], before[-1]["seq"]
            async with (
                httpx.AsyncClient(base_url=pair.b.url) as b,
                b.stream("GET", f"/v1/chat/{mid}/events", headers={"Last-Event-ID": str(last)}) as r,
            ):
                rest = [e["data"] for e in parse_sse((await r.aread()).decode())]
        frames = before + rest
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        assert frames[-1]["type"] == "done"
        assert text_of(frames) == expected_text()

    async def test_another_tenant_cannot_resume_on_b(self, two_instances: PairFactory) -> None:
        """A message id is only visible to its tenant, on every instance."""
        async with two_instances(reply=REPLY, latency=PACED) as pair:
            before = await ask_and_drop(pair, 1)
            mid = before[0]["message_id"]
            async with websockets.connect(pair.b.ws_url + "?tenant=other") as ws:
                await ws.send(json.dumps({"type": "resume", "message_id": mid, "after": 0}))
                error = json.loads(await ws.recv())
            async with httpx.AsyncClient(base_url=pair.b.url) as b:
                r = await b.post(f"/v1/chat/{mid}/stop", headers={"X-Chatbot-Tenant": "other"})
            await pair.fake.wait_stream_ended(5.0)
        assert error["code"] == "unknown_message"
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_message")


class TestStopFromTheOtherInstance:
    async def test_stop_sent_to_b_closes_a_upstream_within_a_second(self, two_instances: PairFactory) -> None:
        """20 trials each over POST /stop and a websocket stop frame sent to B: A's upstream stream closes
        within 1 s and A's reader gets `stopped`."""
        latencies: dict[str, list[float]] = {"http": [], "websocket": []}
        async with (
            two_instances(reply=LONG, latency=SLOW) as pair,
            websockets.connect(pair.a.ws_url) as ws_a,
            websockets.connect(pair.b.ws_url) as ws_b,
            httpx.AsyncClient(base_url=pair.b.url) as b,
        ):
            trial = 0
            for path in ("http", "websocket"):
                for _ in range(STOP_TRIALS):
                    trial += 1
                    await ws_a.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
                    mid = (await first_token(ws_a))["message_id"]
                    sent = time.monotonic()
                    if path == "http":
                        r = await b.post(f"/v1/chat/{mid}/stop")
                        assert r.json() == {"message_id": mid, "stopped": True}
                    else:
                        await ws_b.send(json.dumps({"type": "stop", "message_id": mid}))
                    record = await pair.fake.wait_stream_closed(1.0, index=trial - 1)
                    assert record.client_closed_at is not None
                    assert not record.completed
                    latencies[path].append(record.client_closed_at - sent)
                    frames = await collect_until_end(ws_a)
                    assert (frames[-1]["type"], frames[-1]["reason"]) == ("stopped", "stop_requested")
            await ws_b.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws_b.recv()) == {"type": "pong"}  # B sent no error frame for any stop
        for path, values in latencies.items():
            ms = sorted(v * 1000 for v in values)
            log.info("stop via B (%s): median %.1f ms, max %.1f ms", path, statistics.median(ms), ms[-1])
            assert len(ms) == STOP_TRIALS
            assert ms[-1] < 1000


class TestPresence:
    async def test_a_reader_on_b_keeps_a_answer_alive_past_the_grace_window(
        self, two_instances: PairFactory
    ) -> None:
        """A's reader leaves; a reader on B keeps the answer running for 4 grace windows; when B's reader
        leaves too, A cancels it (upstream closed) soon after the grace window."""
        grace = 0.3
        async with two_instances(reply=LONG, latency=SLOW, stream={"grace_seconds": grace}) as pair:
            before = await ask_and_drop(pair, 1)
            mid = before[0]["message_id"]
            async with websockets.connect(pair.b.ws_url) as ws:
                await ws.send(json.dumps({"type": "resume", "message_id": mid, "after": before[-1]["seq"]}))
                until = time.monotonic() + 4 * grace
                while time.monotonic() < until:
                    frame = json.loads(await ws.recv())
                    assert frame["type"] == "token", frame
                assert pair.fake.streams[-1].client_closed_at is None
            left = time.monotonic()
            record = await pair.fake.wait_stream_closed(3.0)
        assert record.client_closed_at is not None
        assert not record.completed
        assert record.client_closed_at - left < 3 * grace + 0.5  # presence ttl + one more grace window


class TestConversationsAndCounters:
    async def test_a_conversation_started_on_a_continues_on_b(self, two_instances: PairFactory) -> None:
        """The turns saved by A are history on B; B's turns are visible on A; other tenants see nothing."""
        async with (
            two_instances(reply=Reply(text="Short answer [1].")) as pair,
            httpx.AsyncClient(base_url=pair.a.url) as a,
            httpx.AsyncClient(base_url=pair.b.url) as b,
        ):
            first = (await a.post("/v1/chat", json={"message": "How do I install it?"})).json()
            cid = first["conversation_id"]
            second = await b.post("/v1/chat", json={"message": "And then?", "conversation_id": cid})
            on_a = (await a.get(f"/v1/conversations/{cid}")).json()["turns"]
            on_b = (await b.get(f"/v1/conversations/{cid}")).json()["turns"]
            other = await b.get(f"/v1/conversations/{cid}", headers={"X-Chatbot-Tenant": "other"})
            unknown = await b.post("/v1/chat", json={"message": "hi", "conversation_id": "nope"})
        assert second.status_code == 200
        assert on_a == on_b
        assert [(t["role"], t["content"]) for t in on_b][::2] == [
            ("user", "How do I install it?"),
            ("user", "And then?"),
        ]
        assert [t["message_id"] for t in on_b] == [first["message_id"]] * 2 + [
            second.json()["message_id"]
        ] * 2
        assert (other.status_code, other.json()["error"]["code"]) == (404, "unknown_conversation")
        assert unknown.status_code == 404

    async def test_counters_are_shared_by_the_instances(self, two_instances: PairFactory) -> None:
        """services.counters of A and B count against one limit, one total and one set of slots."""
        async with two_instances() as pair:
            a, b = pair.a.services.counters, pair.b.services.counters
            hits = [await c.hit("key:site", 2, 60) for c in (a, b, a)]
            total = [
                await a.add("tenant:acme:tokens", 100, 86_400),
                await b.add("tenant:acme:tokens", 50, 86_400),
            ]
            slots = [
                await a.acquire("tenant:acme:answers", 1, 30),
                await b.acquire("tenant:acme:answers", 1, 30),
            ]
            await a.release("tenant:acme:answers")
        assert hits[:2] == [None, None]
        assert hits[2] is not None
        assert total == [100, 150]
        assert slots == [True, False]

    async def test_readyz_reports_redis(self, two_instances: PairFactory) -> None:
        """/readyz on each instance includes a passing redis check."""
        async with two_instances() as pair:
            bodies = []
            for instance in (pair.a, pair.b):
                async with httpx.AsyncClient(base_url=instance.url) as client:
                    r = await client.get("/readyz")
                    bodies.append((r.status_code, r.json()["checks"]["redis"]))
        assert bodies == [(200, True), (200, True)]


class TestStartup:
    async def test_an_unreachable_redis_fails_start_up(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """build_services refuses to start (RedisUnavailable) rather than serve with a dead Redis."""
        settings = make_settings(
            redis={"url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 0.5, "max_retries": 0}
        )
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            async with build_services(settings, providers=offline_providers, store=guide_store):
                pass
        assert time.monotonic() - started < 3
