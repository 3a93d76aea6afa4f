"""Rate limits and budgets: the same rules on HTTP and websocket; refusals are typed 429s."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from chatbot.chat.caller import Caller
from chatbot.chat.quotas import Quotas
from chatbot.errors import RateLimited
from chatbot.settings import QuotaSettings
from chatbot.stores.memory import MemoryCounters
from tests.fakes.scripting import Latency, Reply
from tests.lifecycle.conftest import StackFactory
from tests.transport.clients import collect_until_end

LONG = Reply(text="A long answer [1].", tokens=4000)


class TestRequestsPerMinute:
    async def test_http_and_websocket_share_one_limit(self, llm_stack: StackFactory) -> None:
        """requests_per_minute counts HTTP requests and websocket asks together; beyond it: rate_limited."""
        async with llm_stack(reply=Reply(text="Ok [1]."), quotas={"requests_per_minute": 3}) as stack:
            async with httpx.AsyncClient(base_url=stack.url) as client:
                for _ in range(2):
                    assert (
                        await client.post("/v1/chat", json={"message": "How do I stop?"})
                    ).status_code == 200
                async with websockets.connect(stack.ws_url) as ws:
                    await ws.send(json.dumps({"type": "ask", "message": "How do I stop?"}))
                    assert (await collect_until_end(ws))[-1]["type"] == "done"
                    await ws.send(json.dumps({"type": "ask", "message": "How do I stop?"}))
                    refused_frame = json.loads(await ws.recv())
                refused = await client.post("/v1/chat", json={"message": "How do I stop?"})
        assert refused_frame["code"] == "rate_limited"
        assert refused_frame["retry_after"] > 0
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1


class TestConcurrentAnswers:
    async def test_second_answer_of_a_tenant_is_refused_then_admitted(self, llm_stack: StackFactory) -> None:
        """With concurrent_answers=1 a tenant's second answer waits its turn; another tenant is unaffected."""
        stack_ = llm_stack(reply=LONG, latency=Latency(token_ms=5), quotas={"concurrent_answers": 1})
        async with stack_ as stack, websockets.connect(stack.ws_url) as first:
            await first.send(json.dumps({"type": "ask", "message": "How do I stop?"}))
            while json.loads(await first.recv())["type"] != "token":
                pass
            stack.fake.reply = Reply(text="Short [1].")  # later requests get a short reply
            async with httpx.AsyncClient(base_url=stack.url) as client:
                refused = await client.post("/v1/chat", json={"message": "How do I resume?"})
                other = await client.post(
                    "/v1/chat", json={"message": "How do I resume?"}, headers={"X-Chatbot-Tenant": "other"}
                )
                await first.send(json.dumps({"type": "stop"}))
                assert (await collect_until_end(first))[-1]["type"] == "stopped"
                admitted = await client.post("/v1/chat", json={"message": "How do I resume?"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
        assert other.status_code == 200
        assert admitted.status_code == 200


class TestTokenBudget:
    async def test_budget_ends_a_running_answer_and_refuses_the_next(self, llm_stack: StackFactory) -> None:
        """An answer that exhausts tokens_per_day ends with quota_exceeded (never done); the next is refused."""
        stack_ = llm_stack(reply=LONG, latency=Latency(token_ms=1), quotas={"tokens_per_day": 200})
        async with stack_ as stack:
            async with websockets.connect(stack.ws_url) as ws:
                await ws.send(json.dumps({"type": "ask", "message": "How do I stop?"}))
                frames = await collect_until_end(ws)
                await ws.send(json.dumps({"type": "ask", "message": "How do I stop?"}))
                refused = json.loads(await ws.recv())
            assert (await stack.fake.wait_stream_closed(1.0)).client_closed_at
        tokens = sum(1 for f in frames if f["type"] == "token")
        assert frames[-1]["type"] == "error"
        assert frames[-1]["code"] == "quota_exceeded"
        assert tokens > 0
        assert refused["code"] == "quota_exceeded"
        assert refused["retry_after"] > 0


class TestConnections:
    async def test_connections_per_tenant(self, llm_stack: StackFactory) -> None:
        """websocket_connections=1: a tenant's second socket is refused with 429; after closing, it works."""
        async with llm_stack(quotas={"websocket_connections": 1}) as stack:
            async with websockets.connect(stack.ws_url):
                with pytest.raises(websockets.InvalidStatus) as refused:
                    async with websockets.connect(stack.ws_url):
                        pass
                async with websockets.connect(stack.ws_url + "?tenant=other"):
                    pass
            async with websockets.connect(stack.ws_url) as again:
                await again.send(json.dumps({"type": "ping"}))
                assert json.loads(await again.recv()) == {"type": "pong"}
        assert refused.value.response.status_code == 429


class TestPerVisitorSlots:
    async def test_a_visitor_holding_its_answers_leaves_others_and_the_key_a_slot(self) -> None:
        """visitor_concurrent_answers=1: the visitor's second answer is refused, another visitor's starts;
        widget answers stop at 4 of the tenant's 5 slots (api_key_reserve 0.2); the key gets the fifth."""
        quotas = Quotas(
            MemoryCounters(),
            QuotaSettings(concurrent_answers=5, visitor_concurrent_answers=1, api_key_reserve=0.2),
        )
        hostile = Caller("acme", kind="widget", visitor="hostile")
        await quotas.begin_answer(hostile, "h1")
        with pytest.raises(RateLimited, match="visitor"):
            await quotas.begin_answer(hostile, "h2")
        for n in range(3):
            await quotas.begin_answer(Caller("acme", kind="widget", visitor=f"v{n}"), f"v{n}")
        with pytest.raises(RateLimited, match="tenant"):
            await quotas.begin_answer(Caller("acme", kind="widget", visitor="late"), "late")
        await quotas.begin_answer(Caller("acme", kind="key", subject="key:site"), "k1")
        await quotas.abandon("k1")
        await quotas.abandon("h1")
        await quotas.begin_answer(hostile, "h3")  # its slots came back
