"""Resume after a dropped connection reassembles exactly the full answer, on both transports."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.fakes.scripting import Latency, Reply
from tests.lifecycle.conftest import StackFactory
from tests.transport.clients import collect_until_end, parse_sse

REPLY = Reply(text="One two three four five six seven eight nine ten [1].", tokens=120)
PACED = Latency(token_ms=4)


def expected_text() -> str:
    return "".join(REPLY.pieces())


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["delta"] for f in frames if f["type"] == "token")


class TestWebsocketResume:
    async def test_resume_mid_answer_gives_every_event_once(self, llm_stack: StackFactory) -> None:
        """Drop the socket after a few tokens; resume on a new socket after the last seq: no gap, no duplicate."""
        async with llm_stack(reply=REPLY, latency=PACED) as stack:
            async with websockets.connect(stack.ws_url) as ws:
                await ws.send(json.dumps({"type": "ask", "message": "How do I resume?"}))
                before: list[dict[str, Any]] = []
                while len([f for f in before if f["type"] == "token"]) < 3:
                    before.append(json.loads(await ws.recv()))
            mid, last = before[0]["message_id"], before[-1]["seq"]
            async with websockets.connect(stack.ws_url) as ws:
                await ws.send(json.dumps({"type": "resume", "message_id": mid, "after": last}))
                after = await collect_until_end(ws)
        frames = before + after
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        assert frames[-1]["type"] == "done"
        assert text_of(frames) == expected_text()
        assert stack.fake.streams[-1].completed

    async def test_resume_after_the_answer_finished(self, llm_stack: StackFactory) -> None:
        """A reconnect that arrives after the end still gets the rest of the answer, then done."""
        async with llm_stack(reply=REPLY, latency=PACED) as stack:
            async with websockets.connect(stack.ws_url) as ws:
                await ws.send(json.dumps({"type": "ask", "message": "How do I resume?"}))
                first = [json.loads(await ws.recv()) for _ in range(3)]
            await stack.fake.wait_stream_ended(5.0)
            async with websockets.connect(stack.ws_url) as ws:
                await ws.send(
                    json.dumps({"type": "resume", "message_id": first[0]["message_id"], "after": 3})
                )
                rest = await collect_until_end(ws)
        frames = first + rest
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        assert text_of(frames) == expected_text()

    async def test_resume_of_another_tenants_answer_is_unknown(self, llm_stack: StackFactory) -> None:
        """A message id is only visible to its tenant."""
        async with llm_stack(reply=REPLY, latency=PACED) as stack, websockets.connect(stack.ws_url) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I resume?"}))
            start = json.loads(await ws.recv())
            async with websockets.connect(stack.ws_url + "?tenant=other") as other:
                await other.send(
                    json.dumps({"type": "resume", "message_id": start["message_id"], "after": 0})
                )
                error = json.loads(await other.recv())
            await collect_until_end(ws)
        assert error["code"] == "unknown_message"


class TestSseResume:
    async def test_last_event_id_resume_mid_answer(self, llm_stack: StackFactory) -> None:
        """Close the SSE stream after a few tokens; GET /events with Last-Event-ID completes it exactly."""
        async with (
            llm_stack(reply=REPLY, latency=PACED) as stack,
            httpx.AsyncClient(base_url=stack.url) as client,
        ):
            before: list[dict[str, Any]] = []
            async with client.stream(
                "POST", "/v1/chat", json={"message": "How do I resume?", "stream": True}
            ) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        before.append(json.loads(line[6:]))
                        if len([f for f in before if f["type"] == "token"]) >= 3:
                            break
            mid, last = before[0]["message_id"], before[-1]["seq"]
            async with client.stream(
                "GET", f"/v1/chat/{mid}/events", headers={"Last-Event-ID": str(last)}
            ) as r:
                rest = [e["data"] for e in parse_sse((await r.aread()).decode())]
        frames = before + rest
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        assert frames[-1]["type"] == "done"
        assert text_of(frames) == expected_text()

    async def test_expired_answer_is_unknown(self, llm_stack: StackFactory) -> None:
        """After the grace window an answer's log is gone: resume gets 404 unknown_message."""
        stack_ = llm_stack(reply=Reply(text="Short [1]."), stream={"grace_seconds": 0.3})
        async with stack_ as stack, httpx.AsyncClient(base_url=stack.url) as c:
            body = (await c.post("/v1/chat", json={"message": "hi there friend"})).json()
            await asyncio.sleep(stack.services.settings.stream.grace_seconds + 0.3)
            r = await c.get(f"/v1/chat/{body['message_id']}/events")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_message")
