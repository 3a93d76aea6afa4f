"""A full stack for lifecycle tests: fake OpenAI upstream <- real openai SDK <- real app on hypercorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from quart import Quart

from chatbot.app import create_app
from chatbot.providers.openai_models import OpenAIChatModel, build_openai_client
from chatbot.providers.registry import Providers
from chatbot.settings import OpenAISettings
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.fakes.scripting import Latency, Reply
from tests.fakes.upstream import FakeUpstream
from tests.serving import serve_app


@dataclass
class Stack:
    url: str
    fake: FakeUpstream
    services: Services
    app: Quart

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"


StackFactory = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


@pytest.fixture
def llm_stack(offline_providers: Providers, guide_store: VectorStore) -> StackFactory:
    """Build a stack whose chat model is the real openai SDK talking to a fake upstream."""

    @contextlib.asynccontextmanager
    async def build(
        *,
        reply: Reply | None = None,
        latency: Latency | None = None,
        openai: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Stack]:
        async with FakeUpstream(reply=reply, latency=latency) as fake:
            openai_settings = OpenAISettings(
                **{
                    "api_key": "test-key",
                    "base_url": fake.openai_base_url,
                    "max_retries": 0,
                    "timeout": 5,
                    **(openai or {}),
                }
            )
            client = build_openai_client(openai_settings)
            try:
                providers = Providers(
                    embedder=offline_providers.embedder,
                    sparse=offline_providers.sparse,
                    chat=OpenAIChatModel(client, openai_settings),
                    reranker=None,
                )
                settings = make_settings(**overrides)
                async with build_services(settings, providers=providers, store=guide_store) as svc:
                    app = create_app(settings, services=svc)
                    async with serve_app(app) as url:
                        yield Stack(url=url, fake=fake, services=svc, app=app)
            finally:
                await client.close()
            for _ in range(100):  # the fake sees the pool's sockets close on its next loop turns
                if fake.open_connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert fake.open_connections == 0, "an upstream connection was left open"
            assert not fake.handler_errors, fake.handler_errors

    return build
