"""The Anthropic Messages-compatible route against the real app on hypercorn, with the official anthropic SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import AsyncAnthropic

from chatbot.events import StoppedEvent
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from tests.transport.test_openai_compat import QUESTION, ScriptedChatModel, StackFactory, stack_factory

ASK = [{"role": "user", "content": QUESTION}]


@pytest.fixture
def scripted_stack(offline_providers: Providers, guide_store: VectorStore) -> StackFactory:
    """Builds a served app around a scripted chat model."""
    return stack_factory(offline_providers, guide_store)


def client_for(url: str) -> AsyncAnthropic:
    return AsyncAnthropic(base_url=url, api_key="not-needed", max_retries=0)


class TestMessages:
    async def test_answer_with_usage(self, served: str) -> None:
        """A non-streamed message: one text block with the cited answer, end_turn, usage, our message id."""
        async with client_for(served) as client:
            message = await client.messages.create(model="chatbot", max_tokens=1024, messages=ASK)  # type: ignore[arg-type]
        assert message.id.startswith("msg_")
        assert message.type == "message"
        assert message.role == "assistant"
        assert message.content[0].type == "text"
        assert message.content[0].text.startswith("From the documents")
        assert message.stop_reason == "end_turn"
        assert message.usage.input_tokens > 0
        assert message.usage.output_tokens > 0

    async def test_stream_matches_the_whole_answer(self, served: str) -> None:
        """The SDK's stream helper assembles the same text; events come in Anthropic's order."""
        async with client_for(served) as client:
            whole = await client.messages.create(model="chatbot", max_tokens=1024, messages=ASK)  # type: ignore[arg-type]
            async with client.messages.stream(model="chatbot", max_tokens=1024, messages=ASK) as stream:  # type: ignore[arg-type]
                kinds = [event.type async for event in stream]
                final = await stream.get_final_message()
        assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
        assert final.stop_reason == "end_turn"
        assert final.usage.output_tokens > 0
        assert kinds[:2] == ["message_start", "content_block_start"]
        assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]

    async def test_max_tokens_and_stop_sequences(self, served: str) -> None:
        """max_tokens cuts the answer (stop_reason max_tokens); a stop sequence ends it before the sequence."""
        async with client_for(served) as client:
            whole = await client.messages.create(model="chatbot", max_tokens=4096, messages=ASK)  # type: ignore[arg-type]
            text = whole.content[0].text  # type: ignore[union-attr]
            cut = await client.messages.create(model="chatbot", max_tokens=3, messages=ASK)  # type: ignore[arg-type]
            stopped = await client.messages.create(
                model="chatbot",
                max_tokens=4096,
                messages=ASK,  # type: ignore[arg-type]
                stop_sequences=[text[30:40]],
            )
        assert cut.stop_reason == "max_tokens"
        assert len(cut.content[0].text.split()) == 3  # type: ignore[union-attr]
        assert stopped.content[0].text == text[: text.index(text[30:40])]  # type: ignore[union-attr]

    async def test_history_and_system(self, scripted_stack: StackFactory) -> None:
        """Earlier turns are the history; the system prompt is not sent to the model (ours defines it)."""
        chat = ScriptedChatModel()
        async with scripted_stack(chat) as (url, _svc), client_for(url) as client:
            await client.messages.create(
                model="chatbot",
                max_tokens=50,
                system="You are a pirate.",
                extra_body={"temperature": 0.5},  # this SDK version has no temperature argument
                messages=[
                    *ASK,
                    {"role": "assistant", "content": "Use POST /v1/documents."},
                    {"role": "user", "content": [{"type": "text", "text": "And PDFs?"}]},
                ],  # type: ignore[list-item]
            )
        sent = chat.requests[0]
        assert [m.role for m in sent.messages] == ["system", "user", "assistant", "user"]
        assert not any("pirate" in m.content for m in sent.messages)
        assert (sent.max_tokens, sent.temperature) == (50, 0.5)


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "error", "fragment"),
        [
            ({"model": "claude-3"}, anthropic.NotFoundError, "model"),
            (
                {"tools": [{"name": "f", "input_schema": {"type": "object"}}]},
                anthropic.BadRequestError,
                "tools",
            ),
            (
                {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
                anthropic.BadRequestError,
                "text",
            ),
            ({"max_tokens": 0}, anthropic.BadRequestError, "max_tokens"),
            ({"messages": [{"role": "assistant", "content": "hi"}]}, anthropic.BadRequestError, "user"),
        ],
        ids=["unknown-model", "tools", "image", "zero-max-tokens", "last-not-user"],
    )
    async def test_bad_requests_raise_the_sdk_exception(
        self, served: str, kwargs: dict[str, Any], error: type[anthropic.APIStatusError], fragment: str
    ) -> None:
        """Each bad request raises the SDK's matching exception; the message names what is wrong."""
        async with client_for(served) as client:
            with pytest.raises(error) as info:
                await client.messages.create(
                    **{"model": "chatbot", "max_tokens": 10, "messages": ASK, **kwargs}
                )
        body = info.value.body
        assert isinstance(body, dict)
        assert body["type"] == "error"
        assert fragment in body["error"]["message"]

    async def test_failure_mid_stream_is_an_error_event(self, scripted_stack: StackFactory) -> None:
        """A failure after tokens is an `error` event: the SDK raises, no message_stop is seen."""
        async with (
            scripted_stack(ScriptedChatModel(tokens=6, fail_after=3)) as (url, _svc),
            client_for(url) as client,
        ):
            kinds: list[str] = []

            async def read() -> None:
                async with client.messages.stream(model="chatbot", max_tokens=100, messages=ASK) as stream:  # type: ignore[arg-type]
                    async for event in stream:
                        kinds.append(event.type)

            with pytest.raises(anthropic.APIStatusError):
                await read()
        assert "message_stop" not in kinds
        assert "content_block_delta" in kinds

    async def test_invalid_json_is_anthropic_shaped(self, served: str) -> None:
        """A body that is not JSON is a 400 in Anthropic's error shape."""
        async with httpx.AsyncClient(base_url=served) as http:
            r = await http.post(
                "/v1/messages", content=b"{nope", headers={"Content-Type": "application/json"}
            )
        assert r.status_code == 400
        assert r.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "The body is not valid JSON."},
        }


class TestDisconnect:
    async def test_disconnect_stops_the_answer(self, scripted_stack: StackFactory) -> None:
        """A client that closes the stream stops the answer at once: the model's stream is closed."""
        chat = ScriptedChatModel(tokens=500, delay=0.01)
        async with scripted_stack(chat) as (url, svc):
            async with (
                client_for(url) as client,
                client.messages.stream(model="chatbot", max_tokens=1000, messages=ASK) as stream,  # type: ignore[arg-type]
            ):
                async for event in stream:
                    if event.type == "content_block_delta":
                        break
                message_id = stream.current_message_snapshot.id
            await asyncio.wait_for(chat.closed.wait(), 2)
            events = [event async for _seq, event in svc.answers.log.read(message_id, "public")]
        assert events[-1] == StoppedEvent(reason="disconnected")
