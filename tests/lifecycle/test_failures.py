"""Deadlines and upstream failures: each ends the answer with exactly one typed error, never a done."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
import websockets

from chatbot.providers.base import Embedder, EmbedKind
from chatbot.stores.base import VectorStore
from tests.fakes.scripting import Fault, Latency, Reply
from tests.lifecycle.conftest import StackFactory
from tests.transport.clients import collect_until_end

LONG = Reply(text="A long answer [1].", tokens=4000)


async def ask(url: str, message: str = "How do I stop an answer?") -> list[dict[str, Any]]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "ask", "message": message}))
        return await collect_until_end(ws)


def single_terminal(frames: list[dict[str, Any]]) -> dict[str, Any]:
    terminals = [f for f in frames if f["type"] in ("done", "stopped", "error")]
    assert len(terminals) == 1, frames[-3:]
    assert terminals[0] is frames[-1], frames[-3:]
    return terminals[0]


class TestUpstreamFaults:
    @pytest.mark.parametrize(
        ("fault", "code", "tokens_first"),
        [
            (Fault.http_status(429, retry_after="7"), "upstream_rate_limited", False),
            (Fault.http_status(500), "upstream_unavailable", False),
            (Fault.http_status(503), "upstream_unavailable", False),
            (Fault.http_status(401), "upstream_auth", False),
            (Fault.drop_after(5), "upstream_unavailable", True),
            (Fault.malformed_after(3), "upstream_bad_response", True),
        ],
        ids=["429", "500", "503", "401", "drop-mid-stream", "malformed-chunk"],
    )
    async def test_fault_becomes_one_typed_error(
        self, llm_stack: StackFactory, fault: Fault, code: str, tokens_first: bool
    ) -> None:
        """The fault ends the answer with its error code; tokens before it are kept; no done."""
        async with llm_stack(reply=LONG, latency=Latency(token_ms=1)) as stack:
            stack.fake.inject(fault)
            frames = await ask(stack.ws_url)
            end = single_terminal(frames)
            assert end["type"] == "error"
            assert end["code"] == code
            assert any(f["type"] == "token" for f in frames) is tokens_first
            if code == "upstream_rate_limited":
                assert end["retry_after"] == 7
            await stack.fake.wait_stream_ended(2.0) if stack.fake.streams else None

    async def test_oversized_chunk_is_handled(self, llm_stack: StackFactory) -> None:
        """A 2 MB chunk mid-stream ends in done or one typed error, never a hang or a crash."""
        async with llm_stack(reply=LONG, latency=Latency(token_ms=1)) as stack:
            stack.fake.inject(Fault.oversized_after(2))
            frames = await asyncio.wait_for(ask(stack.ws_url), 20)
        end = single_terminal(frames)
        assert end["type"] in ("done", "error")

    async def test_sdk_retry_before_first_token_recovers(self, llm_stack: StackFactory) -> None:
        """With one SDK retry, a 500 on the first attempt is invisible: the answer completes."""
        async with llm_stack(reply=Reply(text="Recovered answer [1]."), openai={"max_retries": 1}) as stack:
            stack.fake.inject(Fault.http_status(500, retry_after="0.05"))
            frames = await ask(stack.ws_url)
        assert single_terminal(frames)["type"] == "done"
        assert "Recovered" in "".join(f.get("delta", "") for f in frames)

    async def test_slow_first_byte_past_sdk_timeout(self, llm_stack: StackFactory) -> None:
        """Headers slower than the SDK timeout are upstream_timeout."""
        async with llm_stack(reply=LONG, openai={"timeout": 0.3}) as stack:
            stack.fake.inject(Fault.slow_headers(2.0))
            frames = await ask(stack.ws_url)
        assert single_terminal(frames)["code"] == "upstream_timeout"


class SlowEmbedder:
    """An Embedder that takes `delay` seconds (a slow embedding provider)."""

    def __init__(self, inner: Embedder, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.distance = inner.distance

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        await asyncio.sleep(self.delay)
        return await self.inner.embed(texts, kind)


class SlowSearchStore:
    """The shared store, searching `delay` seconds slower (a slow vector store, whatever the engine)."""

    def __init__(self, inner: VectorStore, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def search(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await self.inner.search(*args, **kwargs)


async def ask_with(providers: Any, store: VectorStore, **overrides: Any) -> list[dict[str, Any]]:
    """One websocket ask against an app built from these providers and this store."""
    from chatbot.app import create_app
    from chatbot.wiring import build_services
    from tests.conftest import make_settings
    from tests.serving import serve_app

    settings = make_settings(**overrides)
    async with (
        build_services(settings, providers=providers, store=store) as svc,
        serve_app(create_app(settings, services=svc)) as url,
    ):
        return await ask(url.replace("http://", "ws://") + "/v1/ws")


class TestDeadlines:
    async def test_first_token_deadline(self, llm_stack: StackFactory) -> None:
        """A first chunk slower than deadlines.first_token ends with first_token_timeout and closes upstream."""
        async with llm_stack(reply=LONG, deadlines={"first_token": 0.3}) as stack:
            stack.fake.inject(Fault.slow_first_chunk(3.0))
            frames = await ask(stack.ws_url)
            assert single_terminal(frames)["code"] == "first_token_timeout"
            assert (await stack.fake.wait_stream_closed(1.0)).client_closed_at

    async def test_whole_answer_deadline_after_tokens(self, llm_stack: StackFactory) -> None:
        """An answer running past deadlines.answer ends with answer_timeout after its tokens, never done."""
        async with llm_stack(reply=LONG, latency=Latency(token_ms=5), deadlines={"answer": 0.5}) as stack:
            frames = await ask(stack.ws_url)
            end = single_terminal(frames)
            assert end["code"] == "answer_timeout"
            assert any(f["type"] == "token" for f in frames)
            assert (await stack.fake.wait_stream_closed(1.0)).client_closed_at

    async def test_retrieve_deadline(self, offline_providers: Any, guide_store: Any) -> None:
        """A vector search slower than deadlines.retrieve ends with retrieve_timeout before any token."""
        frames = await ask_with(
            offline_providers, SlowSearchStore(guide_store, 2.0), deadlines={"retrieve": 0.2}
        )
        assert single_terminal(frames)["code"] == "retrieve_timeout"
        assert not any(f["type"] == "token" for f in frames)

    async def test_embed_deadline(self, offline_providers: Any, guide_store: Any) -> None:
        """A slow embedder past deadlines.embed ends with embed_timeout."""
        from chatbot.providers.registry import Providers

        providers = Providers(
            embedder=SlowEmbedder(offline_providers.embedder, 2.0),
            sparse=offline_providers.sparse,
            chat=offline_providers.chat,
            reranker=None,
        )
        frames = await ask_with(providers, guide_store, deadlines={"embed": 0.2})
        assert single_terminal(frames)["code"] == "embed_timeout"

    async def test_failed_answer_is_saved_with_its_error(self, llm_stack: StackFactory) -> None:
        """A failed answer is saved in the conversation with its error code."""
        import httpx

        async with llm_stack(reply=LONG, latency=Latency(token_ms=1)) as stack:
            stack.fake.inject(Fault.drop_after(4))
            async with httpx.AsyncClient(base_url=stack.url) as client:
                r = await client.post("/v1/chat", json={"message": "What is a tenant?"})
                assert r.status_code == 502
                error = r.json()["error"]
                assert error["code"] == "upstream_unavailable"
                cid = error["details"]["conversation_id"]
                turns = (await client.get(f"/v1/conversations/{cid}")).json()["turns"]
        assert turns[-1]["error"] == "upstream_unavailable"
        assert turns[-1]["content"]
        assert turns[-1]["stopped"] is False
