"""POST /v1/ui/chat (AI SDK UI message stream) against the real app on hypercorn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chatbot.events import StoppedEvent
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from tests.transport.test_openai_compat import QUESTION, ScriptedChatModel, StackFactory, stack_factory
from tests.unit.test_vercel_wire import assert_schema


@pytest.fixture
def scripted_stack(offline_providers: Providers, guide_store: VectorStore) -> StackFactory:
    """Builds a served app around a scripted chat model."""
    return stack_factory(offline_providers, guide_store)


def user(text: str, id_: str = "u1") -> dict[str, Any]:
    return {"id": id_, "role": "user", "parts": [{"type": "text", "text": text}]}


def chat_body(*messages: dict[str, Any]) -> dict[str, Any]:
    """What useChat (AI SDK 5) posts: the chat id, the whole message list, and the trigger."""
    return {"id": "chat-1", "messages": list(messages), "trigger": "submit-message", "messageId": None}


async def data_lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield line[len("data: ") :]


async def ui_parts(url: str, body: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST a chat, return the response and its parts; checks the stream ends with exactly one [DONE]."""
    async with httpx.AsyncClient(base_url=url) as http, http.stream("POST", "/v1/ui/chat", json=body) as r:
        lines = [line async for line in data_lines(r)]
    assert lines[-1] == "[DONE]"
    assert lines.count("[DONE]") == 1
    return r, [json.loads(line) for line in lines[:-1]]


class TestStream:
    async def test_stream_reassembles_the_full_answer(self, served: str) -> None:
        """start, sources, one text part, finish: the deltas joined equal the answer POST /v1/chat gives."""
        r, parts = await ui_parts(served, chat_body(user(QUESTION)))
        async with httpx.AsyncClient(base_url=served) as http:
            native = (await http.post("/v1/chat", json={"message": QUESTION})).json()
        assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        types = [p["type"] for p in parts]
        n_sources = len(native["sources"])
        assert types[: 2 + n_sources] == ["start", *["source-document"] * n_sources, "text-start"]
        assert types[-2:] == ["text-end", "finish"]
        assert set(types[2 + n_sources : -2]) == {"text-delta"}
        assert parts[0]["messageId"].startswith("msg_")
        assert [p["sourceId"] for p in parts[1 : 1 + n_sources]] == [str(s["n"]) for s in native["sources"]]
        assert [p["filename"] for p in parts[1 : 1 + n_sources]] == [s["source"] for s in native["sources"]]
        text_ids = {p["id"] for p in parts if p["type"].startswith("text-")}
        assert len(text_ids) == 1
        assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == native["answer"]
        assert parts[-1]["messageMetadata"]["finishReason"] == "stop"
        for part in parts:
            assert_schema(part)

    async def test_history_is_passed_and_not_stored(self, scripted_stack: StackFactory) -> None:
        """Earlier messages of useChat's list are the history; the last user message is the question."""
        chat = ScriptedChatModel()
        async with scripted_stack(chat) as (url, _svc):
            _, first = await ui_parts(url, chat_body(user(QUESTION)))
            answer = "".join(p["delta"] for p in first if p["type"] == "text-delta")
            assistant = {
                "id": "a1",
                "role": "assistant",
                "parts": [{"type": "step-start"}, {"type": "text", "text": answer}],
            }
            await ui_parts(url, chat_body(user(QUESTION), assistant, user("And PDFs?", "u2")))
        sent = chat.requests[1].messages
        assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
        assert (sent[1].content, sent[2].content) == (QUESTION, answer)
        assert "And PDFs?" in sent[3].content

    async def test_failure_mid_stream_is_an_error_part(self, scripted_stack: StackFactory) -> None:
        """An upstream failure after text closes the text part, sends an error part, and no finish."""
        async with scripted_stack(ScriptedChatModel(tokens=6, fail_after=3)) as (url, _svc):
            _, parts = await ui_parts(url, chat_body(user(QUESTION)))
        assert [p["type"] for p in parts][-2:] == ["text-end", "error"]
        assert parts[-1] == {"type": "error", "errorText": "The model provider is unavailable."}
        assert "finish" not in [p["type"] for p in parts]


class TestStopAndDisconnect:
    async def test_stop_endpoint_aborts_the_stream(self, scripted_stack: StackFactory) -> None:
        """POST /v1/chat/{messageId}/stop ends the stream with text-end, abort, [DONE]; upstream closed."""
        chat = ScriptedChatModel(tokens=500, delay=0.01)
        async with (
            scripted_stack(chat) as (url, _svc),
            httpx.AsyncClient(base_url=url) as http,
            http.stream("POST", "/v1/ui/chat", json=chat_body(user(QUESTION))) as r,
        ):
            lines = data_lines(r)
            message_id = json.loads(await anext(lines))["messageId"]
            while json.loads(await anext(lines))["type"] != "text-delta":
                pass
            stopped = (await http.post(f"/v1/chat/{message_id}/stop")).json()
            rest = [line async for line in lines]
        assert stopped["stopped"] is True
        assert rest[-3:] == [
            json.dumps({"type": "text-end", "id": f"text-{message_id}"}, separators=(",", ":")),
            '{"type":"abort"}',
            "[DONE]",
        ]
        await asyncio.wait_for(chat.closed.wait(), 2)

    async def test_disconnect_stops_the_answer(self, scripted_stack: StackFactory) -> None:
        """Closing the stream (useChat's stop()) stops the answer at once: upstream closed, stopped event."""
        chat = ScriptedChatModel(tokens=500, delay=0.01)
        async with scripted_stack(chat) as (url, svc):
            async with (
                httpx.AsyncClient(base_url=url) as http,
                http.stream("POST", "/v1/ui/chat", json=chat_body(user(QUESTION))) as r,
            ):
                lines = data_lines(r)
                message_id = json.loads(await anext(lines))["messageId"]
                await anext(lines)
                await lines.aclose()
            await asyncio.wait_for(chat.closed.wait(), 2)
            events = [event async for _seq, event in svc.answers.log.read(message_id, "public")]
        assert events[-1] == StoppedEvent(reason="disconnected")


class TestBadRequests:
    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (b"{nope", 400, "invalid_json"),
            (json.dumps({"messages": []}).encode(), 400, "no_messages"),
            (
                json.dumps(
                    chat_body({"id": "a", "role": "assistant", "parts": [{"type": "text", "text": "hi"}]})
                ).encode(),
                400,
                "last_message_not_user",
            ),
            (json.dumps(chat_body(user("x" * 5000))).encode(), 413, "message_too_long"),
            (json.dumps({"id": "chat-1"}).encode(), 422, "validation_error"),
        ],
        ids=["not-json", "no-messages", "last-not-user", "too-long", "no-messages-field"],
    )
    async def test_refused_before_streaming(self, served: str, body: bytes, status: int, code: str) -> None:
        """A bad request is an HTTP error in our usual JSON shape (useChat shows its text as the error)."""
        async with httpx.AsyncClient(base_url=served) as http:
            r = await http.post("/v1/ui/chat", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == status
        assert r.json()["error"]["code"] == code
