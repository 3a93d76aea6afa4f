"""The OpenAI-compatible API with a model provider: the openai SDK, with tools, against the served app whose
chat model is the real OpenAI adapter talking to a fake tool-calling upstream on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from chatbot.providers.registry import Providers
from chatbot.settings import OpenAISettings
from chatbot.stores.base import VectorStore
from tests.conftest import make_settings
from tests.fakes import FakeUpstream
from tests.fakes.openai_api import TOOL_ARGUMENTS, TOOL_CALL_ID
from tests.fakes.scripting import DEFAULT_REPLY
from tests.loopback.conftest import served_with_openai_chat
from tests.openai_schema import check_chunk, check_completion

QUESTION = "How do I upload documents over HTTP?"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


@pytest.fixture
async def served_llm(
    offline_providers: Providers, guide_store: VectorStore, openai_settings: OpenAISettings
) -> AsyncIterator[str]:
    """The app served with the offline embedder, the guide store and the OpenAI adapter as chat model."""
    settings = make_settings(retrieval={"rewrite_followups": False})
    async with served_with_openai_chat(settings, offline_providers, guide_store, openai_settings) as url:
        yield url


def sdk(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0)


def upstream_body(fake: FakeUpstream, index: int = -1) -> dict[str, Any]:
    chats = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    body: dict[str, Any] = chats[index].json()
    return body


async def raw_chunks(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream's data objects, read off the wire (no SDK leniency)."""
    async with (
        httpx.AsyncClient(base_url=url) as http,
        http.stream("POST", "/v1/chat/completions", json={"model": "chatbot", "stream": True, **body}) as r,
    ):
        text = (await r.aread()).decode()
    assert text.endswith("data: [DONE]\n\n")
    return [json.loads(b[len("data: ") :]) for b in text.split("\n\n") if b.startswith("data: {")]


class TestToolCalls:
    async def test_streamed_tool_call_reaches_the_sdk(
        self, served_llm: str, fake_openai: FakeUpstream
    ) -> None:
        """Tools go upstream with the retrieved context; the model's call streams back whole, ending tool_calls."""
        async with sdk(served_llm) as client:
            stream = await client.chat.completions.create(
                model="chatbot",
                messages=[{"role": "user", "content": QUESTION}],
                tools=[WEATHER, CLOCK],  # type: ignore[list-item]
                tool_choice="auto",
                stream=True,
            )
            chunks = [c async for c in stream]
        calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
        assert [(t.index, t.id, t.function.name, t.function.arguments) for t in calls if t.function] == [
            (0, TOOL_CALL_ID, "get_weather", TOOL_ARGUMENTS)
        ]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        sent = upstream_body(fake_openai)
        assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
        assert sent["tools"][0]["function"]["parameters"] == WEATHER["function"]["parameters"]
        assert sent["tool_choice"] == "auto"
        assert sent["messages"][0]["role"] == "system"
        assert "upload" in sent["messages"][0]["content"].lower()  # retrieved context still goes in

    async def test_every_chunk_and_completion_is_schema_valid(self, served_llm: str) -> None:
        """Streamed tool-call chunks and the non-streamed tool-call completion pass OpenAI's chat schema."""
        ask = {"messages": [{"role": "user", "content": QUESTION}], "tools": [WEATHER]}
        for chunk in await raw_chunks(served_llm, ask):
            check_chunk(chunk)
        async with httpx.AsyncClient(base_url=served_llm) as http:
            r = await http.post("/v1/chat/completions", json={"model": "chatbot", **ask})
        completion = check_completion(r.json())
        message = completion.choices[0].message
        assert message.content is None
        assert message.tool_calls is not None
        assert message.tool_calls[0].function.arguments == TOOL_ARGUMENTS  # type: ignore[union-attr]
        assert completion.choices[0].finish_reason == "tool_calls"

    async def test_agent_loop_second_turn(self, served_llm: str, fake_openai: FakeUpstream) -> None:
        """The assistant's tool calls and the tool result are accepted and sent upstream after the question."""
        async with sdk(served_llm) as client:
            first = await client.chat.completions.create(
                model="chatbot",
                messages=[{"role": "user", "content": QUESTION}],
                tools=[WEATHER],  # type: ignore[list-item]
            )
            called = first.choices[0].message
            assert called.tool_calls
            second = await client.chat.completions.create(
                model="chatbot",
                messages=[
                    {"role": "user", "content": QUESTION},
                    called.model_dump(exclude_none=True, exclude={"sources"}),  # type: ignore[list-item]
                    {"role": "tool", "tool_call_id": called.tool_calls[0].id, "content": "18 C and sunny"},
                ],
                tools=[WEATHER],  # type: ignore[list-item]
            )
        assert second.choices[0].message.content == DEFAULT_REPLY
        assert second.choices[0].finish_reason == "stop"
        sent = upstream_body(fake_openai)["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
        assert QUESTION in sent[1]["content"]
        assert sent[2]["tool_calls"] == [
            {
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS},
            }
        ]
        assert sent[3] == {"role": "tool", "content": "18 C and sunny", "tool_call_id": TOOL_CALL_ID}

    async def test_named_tool_choice(self, served_llm: str, fake_openai: FakeUpstream) -> None:
        """A named tool_choice goes upstream as sent and the model calls that tool."""
        choice = {"type": "function", "function": {"name": "get_time"}}
        async with sdk(served_llm) as client:
            answer = await client.chat.completions.create(
                model="chatbot",
                messages=[{"role": "user", "content": QUESTION}],
                tools=[WEATHER, CLOCK],  # type: ignore[list-item]
                tool_choice=choice,  # type: ignore[arg-type]
            )
        assert upstream_body(fake_openai)["tool_choice"] == choice
        assert answer.choices[0].message.tool_calls[0].function.name == "get_time"  # type: ignore[index,union-attr]


class TestOptions:
    async def test_options_are_passed_through(self, served_llm: str, fake_openai: FakeUpstream) -> None:
        """max_completion_tokens, stop, seed and response_format reach the upstream request."""
        schema = {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
        async with sdk(served_llm) as client:
            answer = await client.chat.completions.create(
                model="chatbot",
                messages=[{"role": "user", "content": QUESTION}],
                max_completion_tokens=40,
                stop=["END", "STOP"],
                seed=42,
                response_format={"type": "json_schema", "json_schema": schema},  # type: ignore[typeddict-item]
                temperature=0.1,
            )
        check_completion(answer.model_dump(exclude_unset=True))
        sent = upstream_body(fake_openai)
        assert (sent["max_tokens"], sent["stop"], sent["seed"], sent["temperature"]) == (
            40,
            ["END", "STOP"],
            42,
            0.1,
        )
        assert sent["response_format"] == {"type": "json_schema", "json_schema": schema}
        assert "tools" not in sent

    async def test_more_than_one_choice_is_refused(self, served_llm: str, fake_openai: FakeUpstream) -> None:
        """n > 1 is a BadRequestError naming n; nothing goes upstream."""
        async with sdk(served_llm) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="chatbot", messages=[{"role": "user", "content": QUESTION}], n=2
                )
        assert info.value.param == "n"
        assert not [r for r in fake_openai.requests if r.path == "/v1/chat/completions"]


class TestHistoryWithTools:
    async def test_an_earlier_tool_loop_is_history(self, served_llm: str, fake_openai: FakeUpstream) -> None:
        """A finished tool exchange before the new user message goes upstream as history, in order."""
        call = {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        async with sdk(served_llm) as client:
            await client.chat.completions.create(
                model="chatbot",
                messages=[
                    {"role": "user", "content": "Weather?"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
                    {"role": "assistant", "content": "It is sunny."},
                    {"role": "user", "content": QUESTION},
                ],  # type: ignore[list-item]
            )
        sent = upstream_body(fake_openai)["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
        assert sent[2]["tool_calls"][0]["id"] == "call_0"
        assert sent[3]["tool_call_id"] == "call_0"
        assert QUESTION in sent[5]["content"]

    async def test_a_dangling_tool_call_is_refused(self, served_llm: str, fake_openai: FakeUpstream) -> None:
        """Ending on an assistant tool call with no tool result is a 400 on messages; nothing goes upstream."""
        call = {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        async with sdk(served_llm) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="chatbot",
                    messages=[
                        {"role": "user", "content": QUESTION},
                        {"role": "assistant", "content": None, "tool_calls": [call]},
                    ],  # type: ignore[list-item]
                )
        assert (info.value.code, info.value.param) == ("last_message_not_user", "messages")
        assert not [r for r in fake_openai.requests if r.path == "/v1/chat/completions"]

    async def test_tool_results_without_a_question_are_refused(self, served_llm: str) -> None:
        """Only tool messages (no user message to answer) is a 400 on messages."""
        async with sdk(served_llm) as client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(
                    model="chatbot",
                    messages=[{"role": "tool", "tool_call_id": "call_0", "content": "sunny"}],
                )
        assert info.value.param == "messages"
