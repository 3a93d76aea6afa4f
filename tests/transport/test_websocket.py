"""The websocket protocol against the real app on hypercorn, with the real offline models."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.transport.clients import ask_ws, collect_until_end, ws_url


class TestAsk:
    async def test_streams_a_cited_answer_about_websocket(self, served: str) -> None:
        """A question about the guide streams start, sources, tokens in order, then done, with citations."""
        async with websockets.connect(ws_url(served)) as ws:
            frames = await ask_ws(ws, "How do I connect over websocket?")
        types = [f["type"] for f in frames]
        assert types[0] == "start"
        assert types[1] == "sources"
        assert types[-1] == "done"
        assert "token" in types
        seqs = [f["seq"] for f in frames]
        assert seqs == list(range(1, len(frames) + 1))
        answer = "".join(f["delta"] for f in frames if f["type"] == "token")
        assert "extractive" in answer.lower()
        assert "[1]" in answer or "[2]" in answer
        sources = frames[1]["sources"]
        assert any("websocket" in s["source"] for s in sources)
        done = frames[-1]
        assert done["usage"]["completion_tokens"] > 0
        assert {"embed", "retrieve", "total"} <= set(done["timings"])

    async def test_connection_stays_open_across_turns_and_keeps_history(self, served: str) -> None:
        """Two asks on one connection share a conversation; the history holds both turns."""
        async with websockets.connect(ws_url(served)) as ws:
            first = await ask_ws(ws, "How do I connect over websocket?")
            cid = first[0]["conversation_id"]
            second = await ask_ws(ws, "and how do I stop it?", conversation_id=cid)
        assert second[0]["conversation_id"] == cid
        assert second[-1]["type"] == "done"
        assert any("stop" in s["text"].lower() for s in second[1]["sources"])

    async def test_stop_ends_the_answer_with_stopped(self, served: str) -> None:
        """A stop frame right after ask ends that answer with a stopped frame (or done if it already finished)."""
        async with websockets.connect(ws_url(served)) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I upload documents over HTTP?"}))
            start = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "stop"}))
            frames = [start, *await collect_until_end(ws)]
        assert frames[-1]["type"] in ("stopped", "done")
        assert frames[-1]["message_id"] == start["message_id"]


class TestBadInput:
    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("not json", "invalid_json"),
            ("[1, 2]", "validation_error"),
            ('{"type": "dance"}', "unknown_frame_type"),
            ('{"type": "ask", "message": "   "}', "empty_message"),
            ('{"type": "ask", "message": "' + "x" * 5000 + '"}', "message_too_long"),
            ('{"type": "ask", "message": "hi", "conversation_id": "nope"}', "unknown_conversation"),
            ('{"type": "ask"}', "validation_error"),
            ('{"type": "resume", "message_id": "msg_unknown", "after": 0}', "unknown_message"),
            ('{"type": "stop"}', "nothing_to_stop"),
        ],
    )
    async def test_bad_frame_gets_error_and_connection_stays_usable(
        self, served: str, raw: str, code: str
    ) -> None:
        """Each bad frame gets an error frame with its code; the next ask on the same connection works."""
        async with websockets.connect(ws_url(served)) as ws:
            await ws.send(raw)
            error: dict[str, Any] = json.loads(await ws.recv())
            assert error["type"] == "error"
            assert error["code"] == code
            assert "Traceback" not in error["message"]
            frames = await ask_ws(ws, "How do I resume an answer?")
            assert frames[-1]["type"] == "done"

    async def test_oversized_frame_is_refused(self, served: str) -> None:
        """A frame over max_frame_bytes gets payload_too_large and the connection stays open."""
        async with websockets.connect(ws_url(served), max_size=None) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "x" * 70_000}))
            error = json.loads(await ws.recv())
            assert error["code"] == "payload_too_large"
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}

    async def test_ask_while_running_is_refused(self, served: str) -> None:
        """A second ask while an answer runs on the connection gets answer_in_progress."""
        async with websockets.connect(ws_url(served)) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I connect over websocket?"}))
            await ws.send(json.dumps({"type": "ask", "message": "second"}))
            frames = await collect_until_end(ws, also_errors=True)
        codes = [f.get("code") for f in frames if f["type"] == "error" and "message_id" not in f]
        assert codes == ["answer_in_progress"] or frames[-1]["type"] == "done"


class TestStopReplies:
    async def test_stop_after_the_answer_finished_gets_a_reply(self, served: str) -> None:
        """A stop for an answer that already finished gets a nothing_to_stop error frame, never silence."""
        async with websockets.connect(ws_url(served)) as ws:
            frames = await ask_ws(ws, "How do I resume an answer?")
            await ws.send(json.dumps({"type": "stop"}))
            by_current = json.loads(await asyncio.wait_for(ws.recv(), 5))
            await ws.send(json.dumps({"type": "stop", "message_id": frames[0]["message_id"]}))
            by_id = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert frames[-1]["type"] == "done"
        assert (by_current["type"], by_current["code"]) == ("error", "nothing_to_stop")
        assert (by_id["type"], by_id["code"]) == ("error", "nothing_to_stop")

    async def test_stop_with_no_answer_gets_a_reply(self, served: str) -> None:
        """A stop on a connection that never asked gets nothing_to_stop (and the request_id it carried)."""
        async with websockets.connect(ws_url(served)) as ws:
            await ws.send(json.dumps({"type": "stop"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (reply["type"], reply["code"]) == ("error", "nothing_to_stop")


class TestBusyOrder:
    async def test_answer_in_progress_comes_after_the_first_answers_start(self, served: str) -> None:
        """Two asks sent back to back: the first answer's start frame always precedes answer_in_progress."""
        async with websockets.connect(ws_url(served)) as ws:
            for _ in range(10):
                await ws.send(json.dumps({"type": "ask", "message": "How do I connect over websocket?"}))
                await ws.send(json.dumps({"type": "ask", "message": "second"}))
                frames = await _until_settled(ws)
                assert frames[0]["type"] == "start", frames[0]
                refusals = [i for i, f in enumerate(frames) if f.get("code") == "answer_in_progress"]
                starts = [i for i, f in enumerate(frames) if f["type"] == "start"]
                assert refusals or len(starts) == 2  # refused, or the first had ended before the second came


async def _until_settled(ws: Any) -> list[dict[str, Any]]:
    """Frames until every answer started has ended and the second ask got its reply (a refusal or a start)."""
    frames: list[dict[str, Any]] = []
    running: set[str] = set()
    replies = 0
    while replies < 2 or running:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        frames.append(frame)
        if frame["type"] == "start":
            running.add(frame["message_id"])
            replies += 1
        elif frame["type"] in ("done", "stopped") or (frame["type"] == "error" and "message_id" in frame):
            running.discard(frame["message_id"])
        elif frame["type"] == "error":
            replies += 1
    return frames


class TestHandshakeRefusals:
    async def test_a_refused_handshake_carries_the_request_id(self, served: str) -> None:
        """A refused handshake (here a foreign Origin) has the usual error body, with the request_id sent."""
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                ws_url(served), origin="http://evil.example", additional_headers={"X-Request-ID": "req-7"}
            ):
                pass
        response = refused.value.response
        body = json.loads(response.body)
        assert response.status_code == 403
        assert body["error"]["code"] == "origin_not_allowed"
        assert body["error"]["request_id"] == "req-7"
        assert response.headers["X-Request-ID"] == "req-7"

    async def test_a_refusal_without_a_request_id_gets_one(self, served: str) -> None:
        """Without X-Request-ID the server assigns one, as it does for HTTP errors."""
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(served), origin="http://evil.example"):
                pass
        body = json.loads(refused.value.response.body)
        assert len(body["error"]["request_id"]) == 32
