"""The streamed chat body (providers/openai_models.chat_body) is what chat.completions.create would send."""

from __future__ import annotations

from typing import Any

import pytest
from openai._utils import async_maybe_transform
from openai.types.chat import completion_create_params

from chatbot.providers.base import ChatMessage, ChatRequest, GenerationOptions, Tool, ToolCall
from chatbot.providers.openai_models import chat_body

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
