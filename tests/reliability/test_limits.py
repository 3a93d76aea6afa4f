"""Every documented limit is enforced, with its error code, before it costs the server memory or work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from chatbot.providers.base import ChatChunk, ChatRequest
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services
from tests.transport.clients import ws_url

LIMITS = {
    "max_message_chars": 200,
    "max_history_messages": 4,
    "max_frame_bytes": 4096,
    "max_chat_body_bytes": 16384,
    "max_upload_bytes": 8192,
    "max_files_per_upload": 3,
    "max_connections": 6,
    "max_connections_per_client": 3,
}


class RecordingChatModel:
    """A ChatModel that answers at once and keeps every request it was given."""

    name = "recording"
    max_context_tokens = 8192

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.requests.append(request)
        yield ChatChunk(delta="Answer [1].")
        yield ChatChunk(finish_reason="stop", prompt_tokens=3, completion_tokens=2)


@pytest.fixture
def recorder() -> RecordingChatModel:
    return RecordingChatModel()


@pytest.fixture
async def limited(
    offline_providers: Providers, small_store: VectorStore, recorder: RecordingChatModel
) -> AsyncIterator[tuple[str, Services]]:
    """The app with small limits and a chat model that records what it was sent."""
    providers = Providers(
        embedder=offline_providers.embedder, sparse=offline_providers.sparse, chat=recorder, reranker=None
    )
    async with serve_services(make_settings(limits=LIMITS), providers, small_store) as served:
        yield served


async def ws_ask(ws: Any, frame: dict[str, Any] | str) -> dict[str, Any]:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if reply["type"] in ("done", "stopped", "error"):
            return reply


async def raw_request(url: str, head: str) -> tuple[int, float]:
    """Send only a request head (no body) and time the status line."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = asyncio.get_running_loop().time()
    try:
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1]), asyncio.get_running_loop().time() - started
    finally:
        writer.close()
        await writer.wait_closed()


class TestMessageLength:
    async def test_websocket_message_over_the_limit(self, limited: tuple[str, Services]) -> None:
        """An ask longer than max_message_chars: message_too_long; the connection lives."""
        async with websockets.connect(ws_url(limited[0])) as ws:
            reply = await ws_ask(ws, {"type": "ask", "message": "x" * 201})
            assert reply["code"] == "message_too_long"
            assert "message_id" not in reply
            assert (await ws_ask(ws, {"type": "ask", "message": "x" * 200}))["type"] == "done"

    @pytest.mark.parametrize(
        ("route", "body", "status"),
        [
            ("/v1/chat", {"message": "x" * 201}, 413),
            (
                "/v1/chat/completions",
                {"model": "chatbot", "messages": [{"role": "user", "content": "x" * 201}]},
                400,
            ),
            (
                "/v1/ui/chat",
                {"messages": [{"role": "user", "parts": [{"type": "text", "text": "x" * 201}]}]},
                413,
            ),
        ],
    )
    async def test_http_message_over_the_limit(
        self, limited: tuple[str, Services], route: str, body: dict[str, Any], status: int
    ) -> None:
        """Every HTTP way to ask refuses a long message (the OpenAI route with 400, as OpenAI does)."""
        async with httpx.AsyncClient(base_url=limited[0]) as client:
            response = await client.post(route, json=body)
        assert response.status_code == status
        assert response.json()["error"]["code"] == "message_too_long"


class TestHistoryLength:
    @pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/ui/chat"])
    async def test_client_history_is_capped(
        self, limited: tuple[str, Services], recorder: RecordingChatModel, route: str
    ) -> None:
        """A client that sends 40 earlier messages: the model gets the last max_history_messages of them."""
        turns = [("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(40)] + [
            ("user", "Last?")
        ]
        if route == "/v1/ui/chat":
            body: dict[str, Any] = {
                "messages": [{"role": r, "parts": [{"type": "text", "text": t}]} for r, t in turns]
            }
        else:
            body = {"model": "chatbot", "messages": [{"role": r, "content": t} for r, t in turns]}
        async with httpx.AsyncClient(base_url=limited[0]) as client:
            response = await client.post(route, json=body)
        assert response.status_code == 200
        sent = recorder.requests[-1].messages
        history = [m.content for m in sent[1:-1]]  # between our system message and the question
        assert history == ["turn 36", "turn 37", "turn 38", "turn 39"]

    async def test_history_body_over_the_chat_body_limit(self, limited: tuple[str, Services]) -> None:
        """A history body larger than max_chat_body_bytes: 413 before it is parsed."""
        messages = [{"role": "user", "content": "y" * 100}] * 200
        async with httpx.AsyncClient(base_url=limited[0]) as client:
            response = await client.post(
                "/v1/chat/completions", json={"model": "chatbot", "messages": messages}
            )
        assert response.status_code == 413


class TestFrameAndBodySize:
    async def test_websocket_frame_over_the_limit(self, limited: tuple[str, Services]) -> None:
        """A frame over max_frame_bytes: payload_too_large; the connection lives."""
        async with websockets.connect(ws_url(limited[0])) as ws:
            reply = await ws_ask(ws, json.dumps({"type": "ask", "message": "x" * 5000}))
            assert reply["code"] == "payload_too_large"
            assert (await ws_ask(ws, {"type": "ask", "message": "How do I stop?"}))["type"] == "done"

    @pytest.mark.parametrize("route", ["/v1/chat", "/v1/widget/tokens"])
    async def test_json_body_over_the_limit(self, limited: tuple[str, Services], route: str) -> None:
        """A JSON body over max_frame_bytes: 413 payload_too_large."""
        async with httpx.AsyncClient(base_url=limited[0]) as client:
            response = await client.post(route, content=json.dumps({"message": "x" * 5000}))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

    @pytest.mark.parametrize(
        "route", ["/v1/chat", "/v1/widget/tokens", "/v1/chat/completions", "/v1/ui/chat"]
    )
    async def test_declared_body_over_the_limit_is_refused_before_it_is_read(
        self, limited: tuple[str, Services], route: str
    ) -> None:
        """A declared body over the route's limit (under the app-wide upload limit), none sent: 413 now."""
        head = (
            f"POST {route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 500000\r\n\r\n"
        )
        status, seconds = await raw_request(limited[0], head)
        assert status == 413
        assert seconds < 2


class TestUploads:
    async def test_file_over_the_upload_limit(self, limited: tuple[str, Services]) -> None:
        """A file over max_upload_bytes: 413; nothing stored."""
        async with httpx.AsyncClient(base_url=limited[0], headers={"X-Chatbot-Tenant": "limits"}) as client:
            response = await client.post(
                "/v1/documents", files={"file": ("big.md", b"# Big\n\n" + b"word " * 2000)}
            )
            assert response.status_code == 413
            assert (await client.get("/v1/documents")).json()["documents"] == []

    async def test_documents_per_request(self, limited: tuple[str, Services]) -> None:
        """More files than max_files_per_upload: 400 too_many_files; nothing stored."""
        files = [("file", (f"d{i}.md", b"# D\n\nSome words.")) for i in range(4)]
        async with httpx.AsyncClient(base_url=limited[0], headers={"X-Chatbot-Tenant": "limits"}) as client:
            response = await client.post("/v1/documents", files=files)
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "too_many_files"
            assert (await client.get("/v1/documents")).json()["documents"] == []


class TestConnections:
    async def test_connections_per_client_refused_before_accept(self, limited: tuple[str, Services]) -> None:
        """A client IP with max_connections_per_client open sockets gets 429 busy on the next handshake."""
        url = ws_url(limited[0])
        sockets = [await websockets.connect(url) for _ in range(3)]
        try:
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(url)
            assert refused.value.response.status_code == 429
            assert json.loads(refused.value.response.body)["error"]["code"] == "busy"
            await sockets[0].close()
            for _ in range(100):  # the server forgets the closed socket
                if len(limited[1].connections) < 3:
                    break
                await asyncio.sleep(0.01)
            async with websockets.connect(url) as ws:  # a slot is free again
                assert (await ws_ask(ws, {"type": "ask", "message": "How do I stop?"}))["type"] == "done"
        finally:
            for ws in sockets:
                await ws.close()

    async def test_connections_per_process_refused_before_accept(
        self, offline_providers: Providers, small_store: VectorStore
    ) -> None:
        """Past max_connections open sockets (any client): 429 busy on the next handshake."""
        settings = make_settings(limits={"max_connections": 2, "max_connections_per_client": 10})
        async with serve_services(settings, offline_providers, small_store) as (url, _):
            sockets = [await websockets.connect(ws_url(url)) for _ in range(2)]
            try:
                with pytest.raises(InvalidStatus) as refused:
                    await websockets.connect(ws_url(url))
                assert refused.value.response.status_code == 429
            finally:
                for ws in sockets:
                    await ws.close()
