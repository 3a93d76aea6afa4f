"""The shared answer cache cannot be poisoned (issue 14, item 5): an answer is served only to requests with the
same model, prompts and generation parameters, and a widget visitor's non-default answers are never shared."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from chatbot.api.auth import new_api_key
from chatbot.providers.base import ChatChunk, ChatRequest
from chatbot.providers.registry import Providers
from chatbot.rag.answer_request import AnswerRequest
from chatbot.rag.cached_answers import cache_variant, generation_params
from chatbot.stores.base import AnswerCache, VectorStore
from chatbot.wiring import Services
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services

ORIGIN = "https://site.example"
QUESTION = "How do I stop an answer?"
KEY, KEY_SHA = new_api_key()


class ParamsEchoModel:
    """A ChatModel whose answer names the parameters it was asked with (as a real model's would differ)."""

    name = "params-echo"
    max_context_tokens = 8192

    def __init__(self) -> None:
        self.calls = 0

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls += 1
        yield ChatChunk(delta=f"Answer t={request.temperature} n={request.max_tokens} [1].")
        yield ChatChunk(finish_reason="stop", prompt_tokens=3, completion_tokens=4)


class CountingCache:
    """The app's AnswerCache, counting the answers it stored (stored after the done event: tests wait)."""

    def __init__(self, inner: AnswerCache) -> None:
        self.inner = inner
        self.stored = 0

    async def generation(self, tenant: str) -> str:
        return await self.inner.generation(tenant)

    async def lookup(self, tenant: str, generation: str, variant: str, vector: Sequence[float]) -> Any:
        return await self.inner.lookup(tenant, generation, variant, vector)

    async def store_answer(self, *args: Any, **kwargs: Any) -> None:
        await self.inner.store_answer(*args, **kwargs)
        self.stored += 1

    async def invalidate(self, tenant: str) -> None:
        await self.inner.invalidate(tenant)

    async def until_stored(self, count: int) -> None:
        for _ in range(500):
            if self.stored >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{self.stored} answers stored, expected {count}")


@pytest.fixture
def model() -> ParamsEchoModel:
    return ParamsEchoModel()


@pytest.fixture
async def cached(
    offline_providers: Providers, small_store: VectorStore, model: ParamsEchoModel
) -> AsyncIterator[tuple[str, Services]]:
    providers = dataclasses.replace(offline_providers, chat=model)
    settings = make_settings(
        cache={"enabled": True},
        auth={
            "api_keys": [{"id": "site", "sha256": KEY_SHA, "tenant": "public", "roles": ["chat"]}],
            "token_secret": "s" * 40,
        },
    )
    async with serve_services(settings, providers, small_store) as served:
        assert served[1].pipeline.cache is not None
        await served[1].pipeline.cache.invalidate("public")  # the store is the session's: start empty
        served[1].pipeline.cache = CountingCache(served[1].pipeline.cache)
        yield served


async def widget_client(url: str) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as minting:
        token = (await minting.post("/v1/widget/tokens", json={"origin": ORIGIN})).json()["token"]
    return httpx.AsyncClient(base_url=url, headers={"X-Widget-Token": token, "Origin": ORIGIN})


async def completion(client: httpx.AsyncClient, **params: Any) -> str:
    """Ask through the OpenAI dialect."""
    body = {"model": "chatbot", "messages": [{"role": "user", "content": QUESTION}], **params}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


PARAMS = [{"temperature": 2.0}, {"max_tokens": 7}, {"temperature": 0.0, "max_tokens": 50}]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(p))
async def test_a_visitors_non_default_answer_is_never_served_to_anyone_else(
    cached: tuple[str, Services], model: ParamsEchoModel, params: dict[str, Any]
) -> None:
    """A visitor asks with unusual parameters (twice): the model answers both times, and the API key and other
    visitors asking with defaults get a default answer, never the visitor's."""
    url, svc = cached
    cache = svc.pipeline.cache
    assert isinstance(cache, CountingCache)
    async with await widget_client(url) as hostile:
        poisoned = await completion(hostile, **params)
        assert await completion(hostile, **params) == poisoned
    assert model.calls == 2  # not stored, so not served even to its own author
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as key:
        assert await completion(key) == "Answer t=None n=None [1]."
    await cache.until_stored(1)
    assert cache.stored == 1  # only the default answer
    async with await widget_client(url) as visitor:
        assert await completion(visitor) == "Answer t=None n=None [1]."
    assert model.calls == 3  # the visitor got the key's default answer from the cache


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(p))
async def test_an_answer_is_served_only_to_the_same_parameters(
    cached: tuple[str, Services], model: ParamsEchoModel, params: dict[str, Any]
) -> None:
    """The API key's non-default answer is cached under its parameters: a default request never gets it, and
    the default answer is not served to a request with other parameters."""
    url, svc = cached
    cache = svc.pipeline.cache
    assert isinstance(cache, CountingCache)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as key:
        special = await completion(key, **params)
        await cache.until_stored(1)
        assert await completion(key, **params) == special  # a hit: same parameters
        assert model.calls == 1
        assert await completion(key) == "Answer t=None n=None [1]."
        assert model.calls == 2
        await cache.until_stored(2)
        assert await completion(key) == "Answer t=None n=None [1]."  # the default answer, now cached
        assert model.calls == 2
    async with await widget_client(url) as visitor:
        assert await completion(visitor) == "Answer t=None n=None [1]."  # defaults: shared with visitors


def test_every_generation_parameter_changes_the_cache_key() -> None:
    """Every AnswerRequest field that is not identity or history (present and future) keys the cache, and so
    do the model and the prompt templates."""
    base = AnswerRequest(tenant="t", question="q", message_id="m")
    key = cache_variant(base, model="m1", prompts_version="p1")
    assert generation_params(base)  # temperature, max_tokens, ...
    for name in generation_params(base):
        field = next(f for f in dataclasses.fields(base) if f.name == name)
        changed = dataclasses.replace(base, **{name: 3 if "int" in str(field.type) else 1.5})
        assert cache_variant(changed, model="m1", prompts_version="p1") != key, name
    assert cache_variant(base, model="m2", prompts_version="p1") != key
    assert cache_variant(base, model="m1", prompts_version="p2") != key
    same = dataclasses.replace(base, message_id="other", conversation_id="c", untrusted=True)
    assert cache_variant(same, model="m1", prompts_version="p1") == key
