"""Flow control: slow readers are isolated and detached, limits refuse with busy, heartbeats, shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import websockets

from chatbot.app import drain
from tests.fakes.scripting import Fault, Latency, Reply
from tests.lifecycle.conftest import StackFactory
from tests.transport.clients import collect_until_end

BULKY = Reply(text=("w" * 400 + " ") * 4, tokens=12_000)  # ~5 MB of text, streamed as fast as possible


class TestSlowReader:
    async def test_slow_reader_does_not_delay_a_fast_reader_and_is_detached(
        self, llm_stack: StackFactory
    ) -> None:
        """A client that never reads is disconnected after send_timeout; a fast client's frames keep flowing."""
        stack_ = llm_stack(
            reply=BULKY,
            latency=Latency(token_ms=0.2),
            stream={"send_timeout": 0.5, "coalesce_ms": 30, "grace_seconds": 0.2},
            server={"shutdown_seconds": 0.2},
        )
        async with stack_ as stack:
            async with websockets.connect(
                stack.ws_url, max_queue=1, max_size=None, close_timeout=0.5
            ) as slow:
                await slow.send(json.dumps({"type": "ask", "message": "Tell me everything"}))
                await asyncio.sleep(0.2)  # the slow answer is streaming into a socket nobody reads
                gaps: list[float] = []
                async with websockets.connect(stack.ws_url, max_size=None) as fast:
                    await fast.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
                    last = time.monotonic()
                    while True:
                        frame = json.loads(await fast.recv())
                        now = time.monotonic()
                        if frame["type"] == "token":
                            gaps.append(now - last)
                        last = now
                        if frame["type"] in ("done", "error", "stopped"):
                            break
                        if len(gaps) > 150:
                            await fast.send(json.dumps({"type": "stop"}))
                            await collect_until_end(fast)
                            break
                    for _ in range(100):  # the slow one is detached within send_timeout (+ close timeout)
                        if len(stack.services.connections) == 0:
                            break
                        await asyncio.sleep(0.05)
            gaps.sort()
            p99 = gaps[int(len(gaps) * 0.99) - 1]
            assert p99 < 0.03 + 0.1, f"fast reader's p99 gap {p99:.3f}s"
            assert len(stack.services.connections) == 0

    async def test_event_log_memory_is_bounded(self, llm_stack: StackFactory) -> None:
        """An answer's log never holds more than stream.log_max_events events."""
        async with llm_stack(reply=BULKY, stream={"log_max_events": 64, "coalesce_ms": 0}) as stack:
            async with websockets.connect(stack.ws_url, max_size=None) as ws:
                await ws.send(json.dumps({"type": "ask", "message": "Tell me everything"}))
                start = json.loads(await ws.recv())
                await asyncio.sleep(0.3)
                entry = stack.services.event_log._entries[start["message_id"]]  # type: ignore[attr-defined]
                assert len(entry.events) <= 64
                await ws.send(json.dumps({"type": "stop", "message_id": start["message_id"]}))


class TestLimits:
    async def test_process_limit_refuses_with_busy(self, llm_stack: StackFactory) -> None:
        """Beyond max_answers_per_process an ask gets busy with retry_after, on websocket and HTTP."""
        long = Reply(text="Long [1].", tokens=4000)
        async with (
            llm_stack(
                reply=long, latency=Latency(token_ms=5), limits={"max_answers_per_process": 1}
            ) as stack,
            websockets.connect(stack.ws_url) as first,
            websockets.connect(stack.ws_url) as second,
        ):
            await first.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            json.loads(await first.recv())
            await second.send(json.dumps({"type": "ask", "message": "How do I resume?"}))
            refused = json.loads(await second.recv())
            async with httpx.AsyncClient(base_url=stack.url) as client:
                r = await client.post("/v1/chat", json={"message": "hello there"})
            await first.send(json.dumps({"type": "stop"}))
            await collect_until_end(first)
        assert refused["code"] == "busy"
        assert refused["retry_after"] > 0
        assert (r.status_code, r.json()["error"]["code"]) == (429, "busy")
        assert r.headers["Retry-After"] == "1"

    async def test_replace_policy_stops_the_running_answer(self, llm_stack: StackFactory) -> None:
        """With on_busy_connection=replace a new ask stops the running one (stopped, reason replaced)."""
        long = Reply(text="Long [1].", tokens=4000)
        stack_ = llm_stack(reply=long, latency=Latency(token_ms=5), stream={"on_busy_connection": "replace"})
        async with stack_ as stack, websockets.connect(stack.ws_url) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            first = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "ask", "message": "How do I resume?"}))
            frames: list[dict[str, Any]] = []
            while not (frames and frames[-1]["type"] == "stopped"):
                frames.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "stop"}))
            rest = await collect_until_end(ws)
        assert frames[-1]["message_id"] == first["message_id"]
        assert frames[-1]["reason"] == "replaced"
        assert rest[-1]["message_id"] != first["message_id"]


class TestHeartbeats:
    async def test_sse_sends_comments_while_waiting(self, llm_stack: StackFactory) -> None:
        """During a slow first token the SSE stream carries keep-alive comment lines."""
        async with llm_stack(
            reply=Reply(text="Late answer [1]."), stream={"heartbeat_seconds": 0.1}
        ) as stack:
            stack.fake.inject(Fault.slow_first_chunk(0.6))
            async with httpx.AsyncClient(base_url=stack.url) as client:
                r = await client.post("/v1/chat", json={"message": "How do I stop?", "stream": True})
        body = r.text
        assert body.count(": keep-alive") >= 3
        assert body.index(": keep-alive") < body.index("event: token")


class TestShutdown:
    async def test_shutdown_ends_running_answers_and_closes_websockets_1012(
        self, llm_stack: StackFactory
    ) -> None:
        """On drain: running answers get shutdown_seconds, then an error event; websockets close with 1012."""
        long = Reply(text="Long [1].", tokens=4000)
        stack_ = llm_stack(reply=long, latency=Latency(token_ms=5), server={"shutdown_seconds": 0.3})
        async with stack_ as stack, websockets.connect(stack.ws_url) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            await ws.recv()
            draining = asyncio.create_task(drain(stack.app))
            frames = await collect_until_end(ws)
            await draining
            try:
                await asyncio.wait_for(ws.recv(), 3)
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            async with httpx.AsyncClient(base_url=stack.url) as client:
                r = await client.post("/v1/chat", json={"message": "hello after shutdown"})
            assert (await stack.fake.wait_stream_closed(1.0)).client_closed_at
        assert frames[-1]["type"] == "error"
        assert frames[-1]["code"] == "shutting_down"
        assert code == 1012
        assert (r.status_code, r.json()["error"]["code"]) == (503, "shutting_down")

    async def test_shutdown_lets_short_answers_finish(self, llm_stack: StackFactory) -> None:
        """An answer that finishes within shutdown_seconds ends with done, not an error."""
        short = Reply(text="Short answer [1].", tokens=20)
        stack_ = llm_stack(reply=short, latency=Latency(token_ms=10), server={"shutdown_seconds": 3})
        async with stack_ as stack, websockets.connect(stack.ws_url) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            await ws.recv()
            draining = asyncio.create_task(drain(stack.app))
            frames = await collect_until_end(ws)
            await draining
        assert frames[-1]["type"] == "done"
