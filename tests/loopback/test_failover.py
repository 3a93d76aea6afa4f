"""Provider failover through the real SDKs: before the first token only, with a circuit breaker."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from chatbot.app import create_app
from chatbot.errors import ConfigError, UpstreamUnavailable
from chatbot.providers.base import ChatMessage, ChatRequest
from chatbot.providers.cohere_models import CohereChatModel, build_cohere_client
from chatbot.providers.failover import CircuitBreaker, FailoverChatModel, FailoverEmbedder
from chatbot.providers.openai_models import OpenAIChatModel, OpenAIEmbedder, build_openai_client
from chatbot.providers.registry import Providers, build_providers
from chatbot.settings import CohereSettings, OpenAISettings
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.fakes.scripting import Fault, Reply
from tests.fakes.upstream import FakeUpstream
from tests.serving import serve_app
from tests.transport.clients import collect_until_end

REQUEST = ChatRequest(messages=[ChatMessage("user", "hello")], question="hello")


@contextlib.asynccontextmanager
async def two_vendors() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream, FailoverChatModel]]:
    """OpenAI first, Cohere second, each on its own fake server."""
    async with (
        FakeUpstream(reply=Reply(text="From OpenAI [1].")) as oa,
        FakeUpstream(reply=Reply(text="From Cohere [1].")) as co,
    ):
        oa_settings = OpenAISettings(api_key="k", base_url=oa.openai_base_url, max_retries=0, timeout=5)
        co_settings = CohereSettings(api_key="k", base_url=co.cohere_base_url, max_retries=0, timeout=5)
        oa_client, co_client = build_openai_client(oa_settings), build_cohere_client(co_settings)
        async with co_client:
            try:
                model = FailoverChatModel(
                    [OpenAIChatModel(oa_client, oa_settings), CohereChatModel(co_client, co_settings)],
                    threshold=2,
                    cooldown=60,
                )
                yield oa, co, model
            finally:
                await oa_client.close()


async def answer(model: FailoverChatModel) -> tuple[str, set[str | None]]:
    text, models = "", set()
    async for chunk in model.stream_reply(REQUEST):
        text += chunk.delta
        models.add(chunk.model)
    return text, models


class TestCircuitBreaker:
    def test_opens_after_threshold_and_closes_on_success(self) -> None:
        """Consecutive failures open the circuit; it becomes available after the cooldown; success closes it."""
        breaker = CircuitBreaker(threshold=2, cooldown=10)
        breaker.record_failure()
        assert breaker.available()
        breaker.record_failure()
        assert not breaker.available()
        assert breaker.opened_at is not None
        assert breaker.available(now=breaker.opened_at + 10)
        breaker.record_success()
        assert breaker.available()
        assert breaker.failures == 0


class TestFailoverChat:
    @pytest.mark.parametrize(
        "fault",
        [Fault.http_status(429, retry_after="30"), Fault.http_status(503), Fault.slow_headers(10)],
        ids=["429", "503", "timeout"],
    )
    async def test_fails_over_before_the_first_token(self, fault: Fault) -> None:
        """A 429/5xx/timeout on the first provider hands the answer to the second, which is named."""
        async with two_vendors() as (oa, _co, model):
            if fault.kind == "slow_headers":
                model.models[0]._client = model.models[0]._client.with_options(timeout=0.3)  # type: ignore[attr-defined]
            oa.inject(fault)
            text, models = await answer(model)
        assert text == "From Cohere [1]."
        assert models == {"cohere/command-r-08-2024"}

    async def test_no_failover_after_the_first_token(self) -> None:
        """A drop after tokens is the answer's error; the second provider is never asked."""
        async with two_vendors() as (oa, co, model):
            oa.inject(Fault.drop_after(2))
            with pytest.raises(UpstreamUnavailable):
                await answer(model)
            assert co.requests_to("/v2/chat") == []

    async def test_open_circuit_skips_the_failing_provider(self) -> None:
        """After `threshold` failures the first provider is not even tried until the cooldown passes."""
        async with two_vendors() as (oa, _co, model):
            oa.inject(Fault.http_status(500), Fault.http_status(500))
            await answer(model)
            await answer(model)
            asked = len(oa.requests_to("/v1/chat/completions"))
            text, _ = await answer(model)
            assert text == "From Cohere [1]."
            assert len(oa.requests_to("/v1/chat/completions")) == asked
            assert not model.breakers["openai/gpt-4o-mini"].available()

    async def test_all_failing_raises_the_last_error(self) -> None:
        """When every provider fails before its first token, the last error is raised."""
        async with two_vendors() as (oa, co, model):
            oa.inject(Fault.http_status(503))
            co.inject(Fault.http_status(503))
            with pytest.raises(UpstreamUnavailable):
                await answer(model)

    async def test_done_frame_names_the_model_that_answered(
        self, offline_providers: Providers, guide_store: Any
    ) -> None:
        """Over the websocket, done.model says which provider answered after a failover."""
        async with two_vendors() as (oa, _co, model):
            oa.inject(Fault.http_status(500))
            providers = Providers(
                embedder=offline_providers.embedder,
                sparse=offline_providers.sparse,
                chat=model,
                reranker=None,
            )
            settings = make_settings()
            async with build_services(settings, providers=providers, store=guide_store) as svc:
                async with serve_app(create_app(settings, services=svc)) as url:
                    async with websockets.connect(url.replace("http", "ws") + "/v1/ws") as ws:
                        await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
                        frames = await collect_until_end(ws)
        assert frames[-1]["type"] == "done"
        assert frames[-1]["model"] == "cohere/command-r-08-2024"


class TestFailoverEmbedder:
    async def test_same_space_fails_over(self) -> None:
        """Two deployments of one embedding model: a 503 on the first is answered by the second, same vectors."""
        async with FakeUpstream() as first, FakeUpstream() as second:
            settings = [
                OpenAISettings(api_key="k", base_url=f.openai_base_url, max_retries=0, timeout=5)
                for f in (first, second)
            ]
            clients = [build_openai_client(s) for s in settings]
            try:
                embedder = FailoverEmbedder(
                    [OpenAIEmbedder(c, s) for c, s in zip(clients, settings, strict=True)]
                )
                expected = await embedder.embed(["hello world"], "query")
                first.inject(Fault.http_status(503, path="/v1/embeddings"))
                assert await embedder.embed(["hello world"], "query") == expected
                assert len(second.requests_to("/v1/embeddings")) == 1
            finally:
                for c in clients:
                    await c.close()

    def test_mixing_vector_spaces_is_refused(self, offline_providers: Providers) -> None:
        """An embedder of another model or size cannot be a fallback: it would corrupt retrieval."""

        class OtherSpace:
            name, dimensions, distance = "openai/text-embedding-3-small", 1536, "cosine"

            async def embed(self, texts: Any, kind: Any) -> list[list[float]]:
                return []

        with pytest.raises(ConfigError, match="one vector space"):
            FailoverEmbedder([offline_providers.embedder, OtherSpace()])  # type: ignore[list-item]


class TestRegistry:
    async def test_both_keys_build_a_failover_chain(self) -> None:
        """With OpenAI and Cohere keys the chat model fails over from the primary to the other vendor."""
        settings = make_settings(
            chat_provider="openai",
            openai={"api_key": "a", "fallback_base_url": "http://127.0.0.1:9/v1"},
            cohere={"api_key": "b"},
        )
        async with contextlib.AsyncExitStack() as stack:
            providers = build_providers(settings, stack)
        assert isinstance(providers.chat, FailoverChatModel)
        assert [m.name for m in providers.chat.models] == [
            "openai/gpt-4o-mini",
            "openai/gpt-4o-mini@fallback",
            "cohere/command-r-08-2024",
        ]
        assert providers.reranker is not None

    async def test_failover_can_be_disabled(self) -> None:
        """failover.enabled=false keeps the single configured provider."""
        settings = make_settings(
            chat_provider="openai",
            openai={"api_key": "a"},
            cohere={"api_key": "b"},
            failover={"enabled": False},
        )
        async with contextlib.AsyncExitStack() as stack:
            providers = build_providers(settings, stack)
        assert providers.chat.name == "openai/gpt-4o-mini"
