"""The semantic answer cache: hits are streamed and marked, scoped per tenant, invalidated by changes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import sse_events

DOC = b"# Llamas\n\nLlamas are woolly animals from the Andes. Feed llamas hay and fresh grass every day.\n"
QUESTION = "How should I feed llamas?"


@pytest.fixture
async def cached_app(
    offline_providers: Providers, guide_store: VectorStore
) -> AsyncIterator[tuple[str, Services]]:
    settings = make_settings(cache={"enabled": True})
    async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
        async with serve_app(create_app(settings, services=svc)) as url:
            yield url, svc


@contextlib.asynccontextmanager
async def client_for(url: str, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, headers={"X-Chatbot-Tenant": tenant}) as client:
        yield client


async def ask(client: httpx.AsyncClient, message: str = QUESTION, **extra: Any) -> dict[str, Any]:
    r = await client.post("/v1/chat", json={"message": message, **extra})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


class TestAnswerCache:
    async def test_a_repeated_question_is_answered_from_the_cache(
        self, cached_app: tuple[str, Services]
    ) -> None:
        """The second identical question gets the same answer and sources, marked cached, and counts a hit."""
        url, svc = cached_app
        async with client_for(url, "cache-a") as client:
            await client.post("/v1/documents", files={"file": ("llamas.md", DOC)})
            first = await ask(client)
            second = await ask(client)
            _, events = await sse_events(
                client, "POST", "/v1/chat", json={"message": QUESTION, "stream": True}
            )
        assert first["cached"] is False
        assert second["cached"] is True
        assert second["answer"] == first["answer"]
        assert "hay" in second["answer"]
        assert second["sources"] == first["sources"]
        assert [e["event"] for e in events][:2] == ["start", "sources"]
        assert "token" in [e["event"] for e in events]
        assert events[-1]["data"]["cached"] is True
        assert svc.metrics.cache_hits._value.get() >= 2  # type: ignore[attr-defined]

    async def test_tenants_do_not_share_cached_answers(self, cached_app: tuple[str, Services]) -> None:
        """Another tenant asking the same question is not served tenant A's cached answer."""
        url, _ = cached_app
        async with client_for(url, "cache-b") as a, client_for(url, "cache-c") as b:
            await a.post("/v1/documents", files={"file": ("llamas.md", DOC)})
            await ask(a)
            assert (await ask(a))["cached"] is True
            other = await ask(b)
        assert other["cached"] is False
        assert "hay" not in other["answer"]

    async def test_ingest_and_delete_invalidate(self, cached_app: tuple[str, Services]) -> None:
        """A new document, and a deleted one, make the tenant's next answer fresh."""
        url, _ = cached_app
        async with client_for(url, "cache-d") as client:
            up = (await client.post("/v1/documents", files={"file": ("llamas.md", DOC)})).json()["documents"][
                0
            ]
            await ask(client)
            assert (await ask(client))["cached"] is True
            await client.post("/v1/documents", files={"file": ("alpacas.md", b"# Alpacas\n\nAlpacas hum.\n")})
            assert (await ask(client))["cached"] is False
            assert (await ask(client))["cached"] is True
            await client.delete(f"/v1/documents/{up['doc_id']}")
            after_delete = await ask(client)
        assert after_delete["cached"] is False
        assert "hay" not in after_delete["answer"]

    async def test_follow_ups_are_not_cached(self, cached_app: tuple[str, Services]) -> None:
        """A question inside a conversation depends on it: never served from (or stored in) the cache."""
        url, _ = cached_app
        async with client_for(url, "cache-e") as client:
            await client.post("/v1/documents", files={"file": ("llamas.md", DOC)})
            first = await ask(client, "What are llamas?")
            follow = await ask(client, QUESTION, conversation_id=first["conversation_id"])
            fresh = await ask(client, QUESTION)
        assert follow["cached"] is False
        assert fresh["cached"] is False

    async def test_an_answer_stored_after_a_change_is_never_served(
        self, cached_app: tuple[str, Services]
    ) -> None:
        """An answer computed before an invalidation but stored after it carries the old generation: no hit."""
        _, svc = cached_app
        cache = svc.pipeline.cache
        assert cache is not None
        vector = (await svc.embedder.embed([QUESTION], "query"))[0]
        before = await cache.generation("cache-f")
        await cache.invalidate("cache-f")
        await cache.store_answer(
            "cache-f", before, "v", vector, question=QUESTION, answer="stale", sources=[], model="m"
        )
        assert await cache.lookup("cache-f", await cache.generation("cache-f"), "v", vector) is None
        assert await cache.lookup("cache-f", before, "v", vector) is not None
        assert await cache.lookup("cache-f", before, "other-variant", vector) is None
