"""Loopback fixtures: fake upstream servers on 127.0.0.1 and the real SDK clients pointed at them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatbot.app import create_app
from chatbot.providers.base import ChatModel, Embedder
from chatbot.providers.cohere_models import CohereChatModel, CohereEmbedder, build_cohere_client
from chatbot.providers.openai_models import OpenAIChatModel, OpenAIEmbedder, build_openai_client
from chatbot.providers.registry import Providers
from chatbot.settings import CohereSettings, OpenAISettings, Settings
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.fakes import FakeCohere, FakeOpenAI, FakeUpstream
from tests.loopback.contract import API_KEY, Vendor
from tests.serving import serve_app


async def _fake(cls: type[FakeUpstream]) -> AsyncIterator[FakeUpstream]:
    async with cls(api_key=API_KEY) as fake:
        yield fake
    assert not fake.handler_errors, f"the fake itself failed: {fake.handler_errors}"


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeUpstream]:
    async for fake in _fake(FakeOpenAI):
        yield fake


@pytest.fixture
async def fake_cohere() -> AsyncIterator[FakeUpstream]:
    async for fake in _fake(FakeCohere):
        yield fake


@pytest.fixture
async def openai_vendor(fake_openai: FakeUpstream) -> AsyncIterator[Vendor]:
    async with contextlib.AsyncExitStack() as stack:

        def make(**knobs: Any) -> tuple[Embedder, ChatModel]:
            settings = OpenAISettings(**{**openai_knobs(fake_openai), **knobs})
            client = build_openai_client(settings)
            stack.push_async_callback(client.close)
            return OpenAIEmbedder(client, settings), OpenAIChatModel(client, settings)

        embedder, chat = make()
        yield Vendor("openai", fake_openai, embedder, chat, "/v1/chat/completions", make)


@pytest.fixture
async def cohere_vendor(fake_cohere: FakeUpstream) -> AsyncIterator[Vendor]:
    async with contextlib.AsyncExitStack() as stack:

        def make(**knobs: Any) -> tuple[Embedder, ChatModel]:
            settings = CohereSettings(**{**cohere_knobs(fake_cohere), **knobs})
            client = build_cohere_client(settings)
            stack.push_async_callback(client.__aexit__, None, None, None)  # closes its httpx client
            return CohereEmbedder(client, settings), CohereChatModel(client, settings)

        embedder, chat = make()
        yield Vendor("cohere", fake_cohere, embedder, chat, "/v2/chat", make)


def openai_knobs(fake: FakeUpstream) -> dict[str, Any]:
    return {"api_key": API_KEY, "base_url": fake.openai_base_url, "timeout": 5.0, "max_retries": 0}


def cohere_knobs(fake: FakeUpstream) -> dict[str, Any]:
    return {"api_key": API_KEY, "base_url": fake.cohere_base_url, "timeout": 5.0, "max_retries": 0}


@pytest.fixture
async def openai_settings(fake_openai: FakeUpstream) -> OpenAISettings:
    return OpenAISettings(**openai_knobs(fake_openai))


@pytest.fixture
async def cohere_settings(fake_cohere: FakeUpstream) -> CohereSettings:
    return CohereSettings(**cohere_knobs(fake_cohere))


@contextlib.asynccontextmanager
async def served_with_openai_chat(
    settings: Settings, offline: Providers, store: VectorStore, openai_settings: OpenAISettings
) -> AsyncIterator[str]:
    """The app served on 127.0.0.1 with the OpenAI adapter as chat model (fake upstream), the offline
    embedder and `store`; yields its base URL."""
    client = build_openai_client(openai_settings)
    providers = Providers(
        embedder=offline.embedder,
        sparse=offline.sparse,
        chat=OpenAIChatModel(client, openai_settings),
        reranker=None,
    )
    async with (
        contextlib.AsyncExitStack() as stack,
        build_services(settings, providers=providers, store=store) as svc,
        serve_app(create_app(settings, services=svc)) as url,
    ):
        stack.push_async_callback(client.close)
        yield url
