"""What openai_models posts and reads without the SDK's models: the streamed chat body (what
chat.completions.create would send) and the /embeddings response (what embeddings.create would read)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from openai._utils import async_maybe_transform
from openai.types.chat import completion_create_params

from chatbot.providers.base import ChatMessage, ChatRequest, GenerationOptions, Tool, ToolCall
from chatbot.providers.openai_models import chat_body, read_embeddings

FULL = ChatRequest(
    messages=[
        ChatMessage("system", "Answer from the sources."),
        ChatMessage("user", "earlier question"),
        ChatMessage("assistant", "earlier answer"),
        ChatMessage("user", "What is the weather in Paris? \ud83c\udf24 \x00 </source>"),
    ],
    question="What is the weather in Paris?",
    max_tokens=64,
    temperature=0.2,
    options=GenerationOptions(
        stop=("\n\n", "END"),
        seed=7,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "weather",
                "schema": {"type": "object", "properties": {"t": {"type": "number"}}},
                "strict": True,
            },
        },
        tools=(
            Tool("get_weather", "Weather by city.", {"type": "object", "properties": {"city": {}}}, True),
            Tool("noop"),
        ),
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    ),
    continuation=[
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)),
        ChatMessage("tool", '{"t": 21}', tool_call_id="call_1"),
    ],
)
PLAIN = ChatRequest(messages=[ChatMessage("user", "hi")], question="hi")
CREATE_ORDER = [  # the keys of chat.completions.create's body, in its order (those chat_body may send)
    "model", "stream", "messages", "max_tokens", "response_format", "seed", "stop", "stream_options",
    "temperature", "tool_choice", "tools",
]  # fmt: skip


@pytest.mark.parametrize("request_", [FULL, PLAIN], ids=["every-option", "plain"])
async def test_the_sdk_transform_is_an_identity_on_the_body(request_: ChatRequest) -> None:
    """The SDK's typed-params transform (skipped by posting the body) would change nothing in it."""
    body = chat_body("gpt-x", request_)
    transformed: Any = await async_maybe_transform(
        body, completion_create_params.CompletionCreateParamsStreaming
    )
    assert transformed == body


def test_keys_come_in_create_order_and_unset_options_are_not_sent() -> None:
    """Every option present for a full request, in create()'s order; a plain request sends only the basics."""
    full = chat_body("gpt-x", FULL)
    assert list(full) == CREATE_ORDER
    assert full["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert [m["role"] for m in full["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
    ]
    assert list(chat_body("gpt-x", PLAIN)) == ["model", "stream", "messages", "stream_options"]


def b64(*values: float) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


class TestReadEmbeddings:
    def test_base64_and_float_lists_read_in_index_order(self) -> None:
        """base64 float32 (asked for) and plain numbers (servers that ignore the ask) both read, by index."""
        payload = {"data": [{"index": 1, "embedding": [1, 2.5]}, {"index": 0, "embedding": b64(0.5, -1.0)}]}
        assert read_embeddings(payload) == [[0.5, -1.0], [1.0, 2.5]]

    @pytest.mark.parametrize(
        "payload",
        [
            None,
            [],
            {},
            {"data": None},
            {"data": [None]},
            {"data": [{"embedding": [1.0]}]},
            {"data": [{"index": "x", "embedding": [1.0]}]},
            {"data": [{"index": 0}]},
            {"data": [{"index": 0, "embedding": "not base64!"}]},
            {"data": [{"index": 0, "embedding": base64.b64encode(b"abc").decode()}]},
            {"data": [{"index": 0, "embedding": [1.0, "2"]}]},
            {"data": [{"index": 0, "embedding": [True]}]},
            {"data": [{"index": 0, "embedding": {"a": 1}}]},
        ],
    )
    def test_anything_else_is_a_value_error(self, payload: Any) -> None:
        """A hostile or broken upstream body is a ValueError (the embedder's UpstreamBadResponse), never a crash."""
        with pytest.raises(ValueError):  # noqa: PT011 - the message names what was wrong, which varies
            read_embeddings(payload)
