"""Honest refusal on every transport: a question the guide does not cover gets no sources, the
no-relevant-sources flag where the wire has a sources frame, and the answer that says so (real app on
hypercorn, real offline models, the user guide, a refusal threshold set explicitly)."""

from __future__ import annotations

import httpx
import pytest
import websockets

from chatbot.providers.extractive import NOT_FOUND
from chatbot.settings import Settings
from tests.conftest import make_settings
from tests.loopback.test_mcp import http_client
from tests.transport.clients import ask_ws, sse_events, ws_url

OFF_TOPIC = "What is the capital city of Australia?"
IN_SCOPE = "How do I stop an answer?"
THRESHOLD = 0.3


@pytest.fixture
def settings() -> Settings:
    return make_settings(retrieval={"refusal_threshold": THRESHOLD})


class TestRefusalOnEveryTransport:
    async def test_rest_json_and_sse(self, served: str) -> None:
        """POST /v1/chat: no sources and the not-found answer; SSE: the sources frame carries the flag."""
        async with httpx.AsyncClient(base_url=served, timeout=30) as client:
            body = (await client.post("/v1/chat", json={"message": OFF_TOPIC})).json()
            answered = (await client.post("/v1/chat", json={"message": IN_SCOPE})).json()
            _, events = await sse_events(
                client, "POST", "/v1/chat", json={"message": OFF_TOPIC, "stream": True}
            )
        assert (body["sources"], body["answer"]) == ([], NOT_FOUND)
        assert answered["sources"]
        [sources] = [e["data"] for e in events if e["event"] == "sources"]
        assert sources["sources"] == []
        assert sources["no_relevant_sources"] is True

    async def test_websocket(self, served: str) -> None:
        """The websocket's sources frame is empty and flagged; the tokens spell the not-found answer."""
        async with websockets.connect(ws_url(served)) as ws:
            frames = await ask_ws(ws, OFF_TOPIC)
        [sources] = [f for f in frames if f["type"] == "sources"]
        assert (sources["sources"], sources["no_relevant_sources"]) == ([], True)
        assert "".join(f["delta"] for f in frames if f["type"] == "token") == NOT_FOUND

    async def test_openai_anthropic_and_ai_sdk(self, served: str) -> None:
        """OpenAI chat completions, Anthropic messages and the AI SDK stream: the answer, no source."""
        messages = [{"role": "user", "content": OFF_TOPIC}]
        async with httpx.AsyncClient(base_url=served, timeout=30) as client:
            openai = (
                await client.post("/v1/chat/completions", json={"model": "chatbot", "messages": messages})
            ).json()
            anthropic = (
                await client.post(
                    "/v1/messages", json={"model": "chatbot", "max_tokens": 100, "messages": messages}
                )
            ).json()
            ui = {"id": "c1", "trigger": "submit-message", "messages": [
                {"id": "m1", "role": "user", "parts": [{"type": "text", "text": OFF_TOPIC}]}
            ]}  # fmt: skip
            ai_sdk = (await client.post("/v1/ui/chat", json=ui)).text
        assert openai["choices"][0]["message"]["content"] == NOT_FOUND
        assert openai["choices"][0]["message"]["sources"] == []
        assert anthropic["content"][0]["text"] == NOT_FOUND
        assert '"source-document"' not in ai_sdk
        assert '"source-url"' not in ai_sdk
        assert "could not find this" in ai_sdk

    async def test_mcp_ask(self, served: str) -> None:
        """The MCP ask tool returns the not-found answer and no sources."""
        async with http_client(served) as client:
            result = await client.call_tool("ask", {"question": OFF_TOPIC})
        body = result.structured_content or {}
        assert not result.is_error, result.content
        assert (body["answer"], body["sources"]) == (NOT_FOUND, [])
