"""LangChain's ChatOpenAI (langchain-openai) against the served app: offline (extractive) and with a model
provider (the OpenAI adapter and a fake tool-calling upstream), invoke, stream and a tool-calling loop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from chatbot.providers.registry import Providers
from chatbot.settings import OpenAISettings
from chatbot.stores.base import VectorStore
from tests.conftest import make_settings
from tests.fakes import FakeUpstream
from tests.fakes.openai_api import TOOL_CALL_ID
from tests.fakes.scripting import DEFAULT_REPLY
from tests.loopback.conftest import served_with_openai_chat

QUESTION = "How do I upload documents over HTTP?"


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18 C and sunny in {city}"


def chat_model(url: str, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(
        model="chatbot", base_url=f"{url}/v1", api_key=SecretStr("not-needed"), max_retries=0, **kwargs
    )


@pytest.fixture
async def served_llm(
    offline_providers: Providers, guide_store: VectorStore, openai_settings: OpenAISettings
) -> AsyncIterator[str]:
    """The app with the OpenAI adapter as chat model (fake upstream) and the offline embedder."""
    settings = make_settings(retrieval={"rewrite_followups": False})
    async with served_with_openai_chat(settings, offline_providers, guide_store, openai_settings) as url:
        yield url


class TestLangChain:
    async def test_invoke_and_stream_offline(self, served: str) -> None:
        """ainvoke and astream give the same cited answer, with usage metadata; a system message is fine."""
        llm = chat_model(served, stream_usage=True)
        messages = [SystemMessage("Be brief."), HumanMessage(QUESTION)]
        answer = await llm.ainvoke(messages)
        streamed = None
        async for piece in llm.astream(messages):
            streamed = piece if streamed is None else streamed + piece
        assert isinstance(answer.content, str)
        assert answer.content.startswith("From the documents")
        assert streamed is not None
        assert streamed.content == answer.content
        assert answer.usage_metadata is not None
        assert answer.usage_metadata["total_tokens"] > 0
        assert streamed.usage_metadata is not None
        assert answer.response_metadata["finish_reason"] == "stop"

    async def test_max_tokens_offline(self, served: str) -> None:
        """ChatOpenAI's max_tokens reaches the extractive model: the answer is cut, finish_reason 'length'."""
        answer = await chat_model(served, max_tokens=4).ainvoke([HumanMessage(QUESTION)])
        assert isinstance(answer.content, str)
        assert len(answer.content.split()) == 4
        assert answer.response_metadata["finish_reason"] == "length"

    async def test_tool_calling_loop(self, served_llm: str, fake_openai: FakeUpstream) -> None:
        """bind_tools: the model's call comes back as AIMessage.tool_calls; the ToolMessage turn gets text."""
        llm = chat_model(served_llm).bind_tools([get_weather])
        question = HumanMessage(QUESTION)
        called = await llm.ainvoke([question])
        assert isinstance(called, AIMessage)
        assert [(c["name"], c["args"], c["id"]) for c in called.tool_calls] == [
            ("get_weather", {"city": "Paris", "unit": "celsius"}, TOOL_CALL_ID)
        ]
        result = get_weather.invoke({"city": "Paris"})
        answer = await llm.ainvoke([question, called, ToolMessage(result, tool_call_id=TOOL_CALL_ID)])
        assert answer.content == DEFAULT_REPLY
        sent = [r.json() for r in fake_openai.requests if r.path == "/v1/chat/completions"][-1]
        assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
        assert sent["messages"][-1]["content"] == result

    async def test_streamed_tool_call(self, served_llm: str) -> None:
        """astream with tools: the chunks add up to the whole tool call."""
        llm = chat_model(served_llm).bind_tools([get_weather])
        total = None
        async for piece in llm.astream([HumanMessage(QUESTION)]):
            total = piece if total is None else total + piece
        assert total is not None
        assert [(c["name"], c["args"]) for c in total.tool_calls] == [
            ("get_weather", {"city": "Paris", "unit": "celsius"})
        ]  # type: ignore[attr-defined]
