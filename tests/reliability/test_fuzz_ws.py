"""Property-based: hostile websocket frames get an error frame (or a documented close), never a crash, and the
connection (or a new one) keeps working."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services
from tests.transport.clients import ws_url

# One served app for every example (that is the point: it must survive them all); examples are small.
FUZZ = settings(
    max_examples=120,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FRAME_ERRORS = {  # README: "A bad frame gets an error frame without a message_id"
    "invalid_json",
    "validation_error",
    "unknown_frame_type",
    "empty_message",
    "message_too_long",
    "payload_too_large",
    "unknown_conversation",
    "unknown_message",
    "nothing_to_stop",
    "answer_in_progress",
    "busy",
}
END_TYPES = {"done", "stopped", "error"}
MAX_FRAME = 4096  # limits.max_frame_bytes in these tests: huge frames stay cheap
MAX_CHARS = 300

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_values = (
    json_values | st.text(max_size=MAX_CHARS + 20) | st.sampled_from(["", " ", "\x00", "\ud7ff" * 3])
)
frame_types = st.sampled_from(["ask", "stop", "resume", "ping"]) | st.text(max_size=12) | json_scalars
objects = st.fixed_dictionaries(
    {"type": frame_types},
    optional={
        "message": field_values,
        "message_id": field_values,
        "conversation_id": field_values,
        "after": field_values,
        "request_id": field_values,
        "extra": json_values,
    },
)


def nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


hostile_frames = st.one_of(
    st.text(max_size=200),  # mostly not JSON
    st.binary(max_size=200),  # binary frames
    json_values.map(json.dumps),  # JSON that is not a frame
    objects.map(json.dumps),  # frame-shaped, wrong field types, unknown types and fields
    objects.map(lambda o: json.dumps(o).encode()),  # the same as a binary frame
    st.builds(nested, st.integers(50, 2000), st.sampled_from(["list", "dict"])),  # deeply nested JSON
    st.integers(MAX_FRAME + 1, 4 * MAX_FRAME).map(lambda n: json.dumps({"type": "ask", "message": "x" * n})),
)


class Peer:
    """One websocket to the served app, reconnected when a frame ended it (and the reason recorded)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Any = None
        self.closes: list[int | None] = []

    async def connection(self) -> Any:
        if self.ws is None:
            self.ws = await websockets.connect(self.url, max_size=None)
        return self.ws

    async def answer(self, raw: str | bytes) -> list[dict[str, Any]]:
        """Send one frame; return the frames it caused (up to a terminal, an error or a pong)."""
        ws = await self.connection()
        await ws.send(raw)
        frames: list[dict[str, Any]] = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            frames.append(frame)
            if frame["type"] == "pong" or (frame["type"] == "error" and "message_id" not in frame):
                return frames
            if frame["type"] in END_TYPES:
                return frames

    async def alive(self) -> bool:
        return await self.answer(json.dumps({"type": "ping"})) == [{"type": "pong"}]

    async def aclose(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def fuzz_served(
    offline_providers: Providers, small_store: VectorStore
) -> AsyncIterator[tuple[str, Services]]:
    """The offline app with small frame and message limits."""
    settings = make_settings(limits={"max_frame_bytes": MAX_FRAME, "max_message_chars": MAX_CHARS})
    async with serve_services(settings, offline_providers, small_store) as served:
        yield served


@pytest.fixture
async def peer(fuzz_served: tuple[str, Services]) -> AsyncIterator[Peer]:
    p = Peer(ws_url(fuzz_served[0]))
    yield p
    await p.aclose()


class TestHostileFrames:
    @FUZZ
    @given(raw=hostile_frames)
    async def test_every_frame_gets_a_documented_reply_and_the_connection_lives(
        self, peer: Peer, raw: Any
    ) -> None:
        """Any text or binary frame: a documented error frame, a pong, or a whole answer; then ping works."""
        frames = await peer.answer(raw)
        last = frames[-1]
        if last["type"] == "error" and "message_id" not in last:
            assert last["code"] in FRAME_ERRORS, last
            assert set(last) <= {"type", "code", "message", "details", "retry_after", "request_id"}, last
        elif last["type"] != "pong":  # an ask that happened to be valid: a whole answer, one terminal
            assert frames[0]["type"] == "start", frames[:2]
            assert [f["type"] in END_TYPES for f in frames].count(True) == 1, frames[-2:]
        assert await peer.alive()

    async def test_deep_nesting_is_invalid_json_not_a_crash(self, peer: Peer) -> None:
        """A frame of 2,000 nested arrays (json's recursion limit) is invalid_json; the connection lives."""
        frames = await peer.answer("[" * 2000 + "]" * 2000)
        assert frames[-1]["code"] == "invalid_json"
        assert await peer.alive()

    async def test_empty_binary_frame_is_invalid_json_not_a_crash(self, peer: Peer) -> None:
        """An empty binary frame (Quart hands it over as None) is invalid_json; the connection lives."""
        frames = await peer.answer(b"")
        assert frames[-1]["code"] == "invalid_json"
        assert await peer.alive()

    async def test_frame_over_the_server_message_limit_closes_1009(
        self, fuzz_served: tuple[str, Services]
    ) -> None:
        """A frame past hypercorn's websocket_max_message_size (16 MiB) closes 1009; reconnecting works."""
        url = ws_url(fuzz_served[0])
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send("x" * (17 * 1024 * 1024))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        fresh = Peer(url)
        try:
            assert await fresh.alive()
        finally:
            await fresh.aclose()


class TestFloods:
    async def test_a_flood_of_asks_on_one_connection_is_refused_not_queued(self, peer: Peer) -> None:
        """50 asks at once: one answer runs, the rest get answer_in_progress; then ping works."""
        ws = await peer.connection()
        for i in range(50):
            await ws.send(json.dumps({"type": "ask", "message": f"How do I stop an answer? {i}"}))
        frames: list[dict[str, Any]] = []
        refused = 0
        while refused + sum(1 for f in frames if f["type"] in END_TYPES) < 50:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "error" and "message_id" not in frame:
                assert frame["code"] == "answer_in_progress", frame
                refused += 1
            else:
                frames.append(frame)
        ends = [f for f in frames if f["type"] in END_TYPES]
        assert len({f["message_id"] for f in ends}) == len(ends) == 50 - refused
        assert refused >= 1
        assert await peer.alive()

    async def test_asks_over_the_process_limit_get_busy_with_retry_after(
        self, offline_providers: Providers, small_store: VectorStore
    ) -> None:
        """With max_answers_per_process=2, a burst of asks on 12 connections: every one ends or is busy."""
        settings = make_settings(limits={"max_answers_per_process": 2})
        async with serve_services(settings, offline_providers, small_store) as (url, svc):
            sockets = [await websockets.connect(ws_url(url)) for _ in range(12)]
            try:
                await asyncio.gather(
                    *(ws.send(json.dumps({"type": "ask", "message": "How do I resume?"})) for ws in sockets)
                )
                outcomes = []
                for ws in sockets:
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if frame["type"] in END_TYPES:
                            outcomes.append(frame.get("code", frame["type"]))
                            if frame["type"] == "error":
                                assert "message_id" in frame or frame["retry_after"] > 0, frame
                            break
            finally:
                for ws in sockets:
                    await ws.close()
            assert set(outcomes) <= {"done", "busy"}, outcomes
            assert outcomes.count("busy") >= 1
            assert svc.answers.running == 0 or await _drained(svc)


async def _drained(svc: Services) -> bool:
    for _ in range(200):
        if svc.answers.running == 0:
            return True
        await asyncio.sleep(0.01)
    return False
