"""One widget visitor cannot exhaust a tenant (issue 14, item 6): a hostile visitor that uses up its own limits
(requests per minute, websocket slots, its share of the day's tokens, its address's rate when it rotates
tokens) leaves other visitors and the tenant's API key served, and widget traffic as a whole never takes the
share of the tenant's budget kept for API keys. Visitors are told apart by the id in their token and by their
address (X-Forwarded-For from a trusted proxy: here every client connects from 127.0.0.1, the proxy)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from chatbot.api.auth import client_address, new_api_key
from chatbot.providers.base import ChatChunk, ChatRequest
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.widget_tokens import mint, signing_key
from chatbot.wiring import Services
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services
from tests.transport.clients import ws_url

ORIGIN = "https://site.example"
KEY, KEY_SHA = new_api_key()
TOKENS_PER_ANSWER = 20
QUOTAS = {
    "requests_per_minute": 4,
    "address_requests_per_minute": 6,
    "websocket_connections": 5,
    "visitor_websocket_connections": 1,
    "api_key_reserve": 0.2,  # 1 of 5 connections (and the last 20% of tokens) are the key's
}
BUDGET = {"tokens_per_day": 10 * TOKENS_PER_ANSWER, "visitor_token_share": 0.1}  # one answer per visitor


class CountedModel:
    """A ChatModel that answers at once and reports TOKENS_PER_ANSWER tokens."""

    name = "counted"
    max_context_tokens = 8192

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        yield ChatChunk(delta="Answer [1].")
        yield ChatChunk(finish_reason="stop", prompt_tokens=TOKENS_PER_ANSWER - 2, completion_tokens=2)


@contextlib.asynccontextmanager
async def serve_site(providers: Providers, store: VectorStore, quotas: dict[str, Any]) -> AsyncIterator[Site]:
    settings = make_settings(
        quotas=quotas,
        server={"trusted_proxies": ["127.0.0.1"]},
        auth={
            "api_keys": [{"id": "site", "sha256": KEY_SHA, "tenant": "public", "roles": ["chat"]}],
            "token_secret": "v" * 40,
        },
    )
    async with serve_services(settings, dataclasses.replace(providers, chat=CountedModel()), store) as (
        url,
        svc,
    ):
        site = Site(url, svc)
        try:
            yield site
        finally:
            await site.key.aclose()


@pytest.fixture
async def site(offline_providers: Providers, small_store: VectorStore) -> AsyncIterator[Site]:
    async with serve_site(offline_providers, small_store, QUOTAS) as running:
        yield running


@pytest.fixture
async def budget_site(offline_providers: Providers, small_store: VectorStore) -> AsyncIterator[Site]:
    """As `site`, with a day's token budget and a per-visitor share of it."""
    async with serve_site(offline_providers, small_store, QUOTAS | BUDGET) as running:
        yield running


class Site:
    """The site's backend (holding the API key) and its page visitors, each with its own token and address."""

    def __init__(self, url: str, svc: Services) -> None:
        self.url = url
        self.svc = svc
        self.secret = signing_key(svc.settings.auth)
        self.key = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"})

    async def visitor(self, address: str, visitor: str | None = None) -> dict[str, str]:
        """A page visitor's headers: a token minted for it (as POST /v1/widget/tokens does, without spending
        the key's request rate) and its address as the proxy reports it."""
        token, _ = mint(self.secret, tenant="public", origin=ORIGIN, ttl_seconds=300, visitor=visitor)
        return {"X-Widget-Token": token, "Origin": ORIGIN, "X-Forwarded-For": address}

    async def ask(self, headers: dict[str, str] | None = None) -> int:
        """POST /v1/chat as the visitor with `headers` (or as the API key); the status."""
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers or {"Authorization": f"Bearer {KEY}"}
        ) as client:
            return (await client.post("/v1/chat", json={"message": "How do I stop an answer?"})).status_code


async def settled(svc: Services, tenant_tokens: int) -> None:
    """Wait until the tenant's token total reaches `tenant_tokens` (accounting runs after the answer)."""
    for _ in range(300):
        if await svc.counters.add("tokens:public", 0, 86_400) >= tenant_tokens:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("tokens were not accounted")


async def test_a_visitor_over_its_request_rate_leaves_others_served(site: Site) -> None:
    """The hostile visitor's 5th request in a minute is refused; another visitor and the API key are served."""
    hostile = await site.visitor("203.0.113.66")
    statuses = [await site.ask(hostile) for _ in range(QUOTAS["requests_per_minute"] + 1)]
    assert statuses[-1] == 429
    assert await site.ask(await site.visitor("198.51.100.7")) == 200
    assert await site.ask() == 200


async def test_a_visitor_rotating_tokens_is_stopped_by_its_address(site: Site) -> None:
    """A new token for every request (a reloaded page) does not reset the limits: its address's rate stops it,
    while a visitor at another address is served."""
    rate = QUOTAS["address_requests_per_minute"]
    statuses = [await site.ask(await site.visitor("203.0.113.66")) for _ in range(rate + 1)]
    assert statuses == [200] * rate + [429]
    assert await site.ask(await site.visitor("198.51.100.7")) == 200


async def test_a_visitors_token_share_and_the_api_key_reserve(budget_site: Site) -> None:
    """Each visitor gets its share of the day's tokens (one answer here); all visitors together stop at 80% of
    the budget; the API key still gets the reserved 20%."""
    site, svc = budget_site, budget_site.svc
    hostile = await site.visitor("203.0.113.66", "hostile")
    assert await site.ask(hostile) == 200
    await settled(svc, TOKENS_PER_ANSWER)
    assert await site.ask(hostile) == 429  # its share is used up
    served_visitors = 1
    for n in range(10):  # other visitors until widget traffic reaches 80% of the budget
        status = await site.ask(await site.visitor(f"198.51.100.{n + 10}", f"v{n}"))
        if status != 200:
            break
        served_visitors += 1
        await settled(svc, served_visitors * TOKENS_PER_ANSWER)
    assert served_visitors == 8  # 8 x 20 = 160 = 80% of 200
    assert await site.ask() == 200  # the key's reserve
    await settled(svc, 9 * TOKENS_PER_ANSWER)
    assert await site.ask() == 200


async def test_a_visitors_websocket_slots(site: Site) -> None:
    """A visitor holding its one websocket cannot open another; another visitor can, and the API key can open
    the connection kept for it when widget visitors hold all of theirs."""
    url = ws_url(site.url)
    hostile = await site.visitor("203.0.113.66", "hostile")
    async with websockets.connect(url, additional_headers=hostile) as first:
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=hostile):
                pass
        assert refused.value.response.status_code == 429
        others = [await site.visitor(f"198.51.100.{n}", f"v{n}") for n in range(4)]
        opened = [await websockets.connect(url, additional_headers=h) for h in others[:3]]
        try:  # 4 widget connections: the widget share of 5
            with pytest.raises(InvalidStatus):
                async with websockets.connect(url, additional_headers=others[3]):
                    pass
            async with websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {KEY}"}
            ) as key_ws:
                await key_ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
                assert json.loads(await key_ws.recv())["type"] == "start"
        finally:
            for ws in opened:
                await ws.close()
        await first.close()


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    """X-Forwarded-For is read only when the peer is a trusted proxy, right to left past trusted hops."""
    trusted = ["10.0.0.0/8"]
    assert client_address("198.51.100.1", "6.6.6.6", trusted) == "198.51.100.1"  # not from a proxy
    assert client_address("10.0.0.2", "6.6.6.6, 203.0.113.5", trusted) == "203.0.113.5"  # forged left part
    assert client_address("10.0.0.2", "203.0.113.5, 10.0.0.9", trusted) == "203.0.113.5"
    assert client_address("10.0.0.2", "not-an-ip", trusted) == "not-an-ip"
    assert client_address("10.0.0.2", None, trusted) == "10.0.0.2"
    assert client_address("10.0.0.2", "6.6.6.6", []) == "10.0.0.2"
