"""The behaviour every vendor adapter shares, run once per provider by subclassing with a `vendor` fixture.

test_openai_models.py and test_cohere_models.py each define `vendor` and `class Test...(ProviderContract)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chatbot.errors import (
    UpstreamAuth,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from chatbot.providers.base import ChatChunk, ChatMessage, ChatModel, ChatRequest, Embedder
from tests.fakes import FakeUpstream, Fault, Reply, embed_text

API_KEY = "test-key"


@dataclass
class Vendor:
    """One provider under test: its fake, adapters on a default client, and a factory for other knobs."""

    name: str
    fake: FakeUpstream
    embedder: Embedder
    chat: ChatModel
    chat_path: str  # the fake's path for chat requests
    make: Callable[..., tuple[Embedder, ChatModel]]  # make(timeout=..., max_retries=..., max_concurrency=...)


def ask(question: str = "Where does the setting live?", **params: Any) -> ChatRequest:
    messages = [ChatMessage("system", "Answer from the sources."), ChatMessage("user", question)]
    return ChatRequest(messages=messages, question=question, **params)


async def collect(chat: ChatModel, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in chat.stream_reply(request)]


async def collect_until_error(chat: ChatModel, request: ChatRequest) -> tuple[list[str], UpstreamError]:
    """The deltas received before the stream failed, and the error it failed with."""
    deltas: list[str] = []

    async def consume() -> None:
        async for chunk in chat.stream_reply(request):
            deltas.append(chunk.delta)

    with pytest.raises(UpstreamError) as caught:
        await consume()
    return deltas, caught.value


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll `condition` until it holds (the fake records from the same loop, so polling is enough)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


class EmbeddingContract:
    async def test_is_an_embedder_named_after_its_model(self, vendor: Vendor) -> None:
        """The embedder satisfies the Protocol and names its vector space vendor/model."""
        assert isinstance(vendor.embedder, Embedder)
        assert vendor.embedder.name.startswith(f"{vendor.name}/")
        assert vendor.embedder.distance == "cosine"

    @pytest.mark.parametrize("kind", ["query", "document"])
    async def test_one_vector_per_text_in_order(self, vendor: Vendor, kind: str) -> None:
        """A batch comes back in input order, each vector of the configured size."""
        texts = [f"text number {i} about topic {i % 3}" for i in range(12)]
        vectors = await vendor.embedder.embed(texts, kind)  # type: ignore[arg-type]
        assert len(vectors) == len(texts)
        for text, vector in zip(texts, vectors, strict=True):
            assert len(vector) == vendor.embedder.dimensions
            assert vector == pytest.approx(embed_text(text, vendor.embedder.dimensions), abs=1e-6)

    async def test_related_texts_are_nearer(self, vendor: Vendor) -> None:
        """Texts sharing words are closer than unrelated ones (what retrieval tests rely on)."""
        query, near, far = await vendor.embedder.embed(
            ["configure the qdrant url", "the qdrant url is configured here", "bananas are yellow"],
            "document",
        )
        assert cosine(query, near) > cosine(query, far) + 0.2

    async def test_empty_batch_sends_nothing(self, vendor: Vendor) -> None:
        """Embedding no texts returns no vectors and makes no request."""
        assert await vendor.embedder.embed([], "query") == []
        assert not vendor.fake.requests

    @pytest.mark.parametrize(
        ("fault", "error"),
        [
            (Fault.http_status(429, retry_after="11"), UpstreamRateLimited),
            (Fault.http_status(500), UpstreamUnavailable),
            (Fault.http_status(503), UpstreamUnavailable),
            (Fault.http_status(401), UpstreamAuth),
            (Fault.http_status(400), UpstreamBadResponse),
            (Fault.drop_after(0), UpstreamUnavailable),
            (Fault.malformed_after(0), UpstreamBadResponse),
        ],
        ids=["429", "500", "503", "401", "400", "drop", "malformed"],
    )
    async def test_embed_faults_map_to_errors(
        self, vendor: Vendor, fault: Fault, error: type[UpstreamError]
    ) -> None:
        """Each upstream failure of an embed call becomes the matching Upstream* error."""
        vendor.fake.inject(fault)
        with pytest.raises(error) as caught:
            await vendor.embedder.embed(["hello"], "query")
        assert caught.value.provider == vendor.name
        assert caught.value.__cause__ is not None

    async def test_embed_timeout(self, vendor: Vendor) -> None:
        """An embed answer slower than the SDK timeout is an UpstreamTimeout."""
        embedder, _ = vendor.make(timeout=0.2)
        vendor.fake.inject(Fault.slow_headers(2.0))
        with pytest.raises(UpstreamTimeout):
            await embedder.embed(["hello"], "query")


class StreamingContract:
    async def test_is_a_chat_model_named_after_its_model(self, vendor: Vendor) -> None:
        """The chat model satisfies the Protocol, names itself vendor/model and has a context size."""
        assert isinstance(vendor.chat, ChatModel)
        assert vendor.chat.name.startswith(f"{vendor.name}/")
        assert vendor.chat.max_context_tokens >= 8000

    async def test_deltas_in_order_then_usage(self, vendor: Vendor) -> None:
        """The reply arrives as ordered deltas, then one final chunk with finish_reason and usage."""
        vendor.fake.reply = Reply(text="Alpha beta, gamma [1].", prompt_tokens=42)
        chunks = await collect(vendor.chat, ask())
        assert [c.delta for c in chunks[:-1]] == ["Alpha", " beta,", " gamma", " [1]."]
        assert all(c.finish_reason is None and c.prompt_tokens is None for c in chunks[:-1])
        assert chunks[-1] == ChatChunk(delta="", finish_reason="stop", prompt_tokens=42, completion_tokens=4)

    async def test_token_count_knob(self, vendor: Vendor) -> None:
        """A reply of N tokens arrives as N deltas and reports N completion tokens."""
        vendor.fake.reply = Reply(tokens=150)
        chunks = await collect(vendor.chat, ask())
        assert len(chunks) == 151
        assert chunks[-1].completion_tokens == 150

    async def test_missing_usage_is_none(self, vendor: Vendor) -> None:
        """A server that reports no usage still ends the stream normally, with usage None."""
        vendor.fake.reply = Reply(text="short answer", usage=False)
        chunks = await collect(vendor.chat, ask())
        assert chunks[-1] == ChatChunk(finish_reason="stop")

    async def test_unicode_survives_chunking(self, vendor: Vendor) -> None:
        """Multi-byte text comes through intact."""
        vendor.fake.reply = Reply(text="Naïve café — 東京 🚀 [1].")
        chunks = await collect(vendor.chat, ask())
        assert "".join(c.delta for c in chunks) == "Naïve café — 東京 🚀 [1]."

    async def test_length_finish_reason(self, vendor: Vendor) -> None:
        """A reply cut by max_tokens finishes with finish_reason 'length'."""
        vendor.fake.reply = Reply(text="cut short", finish_reason="length")
        chunks = await collect(vendor.chat, ask(max_tokens=2))
        assert chunks[-1].finish_reason == "length"

    async def test_request_carries_messages_and_params(self, vendor: Vendor) -> None:
        """The upstream request holds the messages, max_tokens, temperature and stream=true."""
        await collect(vendor.chat, ask("What is up?", max_tokens=64, temperature=0.2))
        [body] = vendor.fake.requests_to(vendor.chat_path)
        assert body["stream"] is True
        assert body["max_tokens"] == 64
        assert body["temperature"] == 0.2
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][1]["content"] == "What is up?"

    async def test_unset_params_are_left_out(self, vendor: Vendor) -> None:
        """max_tokens and temperature are not sent when the request does not set them."""
        await collect(vendor.chat, ask())
        [body] = vendor.fake.requests_to(vendor.chat_path)
        assert "max_tokens" not in body
        assert "temperature" not in body

    async def test_connection_is_reused(self, vendor: Vendor) -> None:
        """Consecutive streams and embeds share one keep-alive connection."""
        for _ in range(3):
            await collect(vendor.chat, ask())
            await vendor.embedder.embed(["hello"], "query")
        assert vendor.fake.connections_total == 1
        assert all(record.completed for record in vendor.fake.streams)


class StopContract:
    async def test_aclose_closes_upstream_within_a_second(self, vendor: Vendor) -> None:
        """Closing the iterator early makes the upstream see the client close within 1 s."""
        vendor.fake.reply = Reply(tokens=100)
        vendor.fake.latency.token_ms = 50
        stream = vendor.chat.stream_reply(ask())
        assert isinstance(stream, AsyncIterator)
        first = await anext(stream)
        assert first.delta
        stopped_at = time.monotonic()
        await stream.aclose()  # type: ignore[attr-defined]
        record = await vendor.fake.wait_stream_closed(within=1.0)
        assert record.client_closed_at is not None
        assert record.client_closed_at - stopped_at < 1.0
        assert not record.completed
        assert record.tokens < 100

    async def test_cancelling_the_consumer_closes_upstream(self, vendor: Vendor) -> None:
        """Cancelling the task that iterates closes the upstream stream."""
        vendor.fake.reply = Reply(tokens=100)
        vendor.fake.latency.token_ms = 50
        received: list[str] = []

        async def consume() -> None:
            async for chunk in vendor.chat.stream_reply(ask()):
                received.append(chunk.delta)

        task = asyncio.create_task(consume())
        await until(lambda: len(received) >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = await vendor.fake.wait_stream_closed(within=1.0)
        assert not record.completed

    async def test_stop_while_waiting_for_the_first_token(self, vendor: Vendor) -> None:
        """A stop before the first token (the model still thinking) also closes upstream."""
        vendor.fake.latency.first_token_ms = 10_000
        task = asyncio.create_task(collect(vendor.chat, ask()))
        await until(lambda: bool(vendor.fake.streams) and vendor.fake.streams[-1].headers_at is not None)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = await vendor.fake.wait_stream_closed(within=1.0)
        assert record.tokens == 0

    async def test_concurrency_slot_is_released_on_close(self, vendor: Vendor) -> None:
        """With max_concurrency=1, a closed stream frees the slot for the next request."""
        _, chat = vendor.make(max_concurrency=1)
        vendor.fake.reply = Reply(tokens=20)
        async with contextlib.aclosing(chat.stream_reply(ask())) as stream:  # type: ignore[type-var]
            await anext(stream)
        chunks = await asyncio.wait_for(collect(chat, ask()), timeout=5)
        assert chunks[-1].completion_tokens == 20

    async def test_embedder_and_chat_share_the_bound(self, vendor: Vendor) -> None:
        """Adapters on one client share its limit: at max_concurrency=1 an embed waits for an open stream."""
        embedder, chat = vendor.make(max_concurrency=1)
        vendor.fake.reply = Reply(tokens=20)
        async with contextlib.aclosing(chat.stream_reply(ask())) as stream:  # type: ignore[type-var]
            await anext(stream)
            embedding = asyncio.create_task(embedder.embed(["hello"], "query"))
            await asyncio.sleep(0.1)
            assert not embedding.done()
        assert len(await asyncio.wait_for(embedding, 5)) == 1

    async def test_concurrency_is_bounded(self, vendor: Vendor) -> None:
        """With max_concurrency=1, a second stream starts upstream only after the first ends."""
        _, chat = vendor.make(max_concurrency=1)
        vendor.fake.reply = Reply(tokens=5)
        vendor.fake.latency.token_ms = 20
        await asyncio.gather(collect(chat, ask()), collect(chat, ask()))
        first, second = vendor.fake.streams
        assert first.completed
        assert second.completed
        assert first.completed_at is not None
        assert second.started_at > first.completed_at


class StreamFaultContract:
    @pytest.mark.parametrize(
        ("status", "error"),
        [
            (500, UpstreamUnavailable),
            (502, UpstreamUnavailable),
            (503, UpstreamUnavailable),
            (504, UpstreamTimeout),
            (401, UpstreamAuth),
            (403, UpstreamAuth),
            (400, UpstreamBadResponse),
            (404, UpstreamBadResponse),
            (422, UpstreamBadResponse),
        ],
    )
    async def test_status_maps_to_error(
        self, vendor: Vendor, status: int, error: type[UpstreamError]
    ) -> None:
        """An HTTP error status before the stream starts becomes the matching Upstream* error."""
        vendor.fake.inject(Fault.http_status(status))
        deltas, exc = await collect_until_error(vendor.chat, ask())
        assert type(exc) is error
        assert deltas == []
        assert exc.provider == vendor.name
        assert exc.__cause__ is not None

    async def test_wrong_api_key(self, vendor: Vendor) -> None:
        """The key from settings is what the SDK sends; a refused key is UpstreamAuth."""
        embedder, chat = vendor.make(api_key="not-the-key")
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamAuth)
        with pytest.raises(UpstreamAuth):
            await embedder.embed(["hello"], "query")

    async def test_rate_limit_carries_retry_after(self, vendor: Vendor) -> None:
        """A 429 becomes UpstreamRateLimited with retry_after from the Retry-After header."""
        vendor.fake.inject(Fault.http_status(429, retry_after="7"))
        _, exc = await collect_until_error(vendor.chat, ask())
        assert isinstance(exc, UpstreamRateLimited)
        assert exc.retry_after == 7.0
        assert exc.to_dict()["retry_after"] == 7.0

    async def test_public_message_hides_upstream_text(self, vendor: Vendor) -> None:
        """The error's public message is ours, not the provider's body."""
        vendor.fake.inject(Fault.http_status(429, retry_after="1"))
        _, exc = await collect_until_error(vendor.chat, ask())
        assert exc.message == UpstreamRateLimited.default_message
        public = str(exc.to_dict()) + str(exc)
        assert "Rate limit reached" not in public
        assert "Trial key" not in public

    async def test_slow_headers_past_timeout(self, vendor: Vendor) -> None:
        """No response headers within the SDK timeout is an UpstreamTimeout."""
        _, chat = vendor.make(timeout=0.2)
        vendor.fake.inject(Fault.slow_headers(2.0))
        started = time.monotonic()
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamTimeout)
        assert time.monotonic() - started < 1.5

    async def test_slow_first_chunk_past_timeout(self, vendor: Vendor) -> None:
        """Headers but no first chunk within the SDK timeout is an UpstreamTimeout."""
        _, chat = vendor.make(timeout=0.2)
        vendor.fake.inject(Fault.slow_first_chunk(2.0))
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamTimeout)
        record = await vendor.fake.wait_stream_closed(within=1.0)
        assert record.headers_at is not None

    async def test_connection_refused(self, vendor: Vendor, unused_tcp_port: int) -> None:
        """Nothing listening on the port is UpstreamUnavailable."""
        closed = vendor.fake.base_url.replace(vendor.fake.origin, f"http://127.0.0.1:{unused_tcp_port}")
        embedder, chat = vendor.make(base_url=closed)
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamUnavailable)
        with pytest.raises(UpstreamUnavailable):
            await embedder.embed(["hello"], "query")

    async def test_drop_mid_stream(self, vendor: Vendor) -> None:
        """A socket closed after K tokens yields those K deltas, then raises UpstreamUnavailable."""
        vendor.fake.reply = Reply(text="one two three four five six")
        vendor.fake.inject(Fault.drop_after(3))
        deltas, exc = await collect_until_error(vendor.chat, ask())
        assert deltas == ["one", " two", " three"]
        assert isinstance(exc, UpstreamUnavailable)

    async def test_drop_after_the_last_token_is_not_a_normal_end(self, vendor: Vendor) -> None:
        """A stream cut after every token but before its end marker is an error, not a short answer."""
        vendor.fake.reply = Reply(text="one two")
        vendor.fake.inject(Fault.drop_after(99))
        deltas, exc = await collect_until_error(vendor.chat, ask())
        assert deltas == ["one", " two"]
        assert isinstance(exc, UpstreamUnavailable)

    async def test_malformed_chunk(self, vendor: Vendor) -> None:
        """A data line that is not JSON raises UpstreamBadResponse (never skipped silently)."""
        vendor.fake.inject(Fault.malformed_after(2))
        deltas, exc = await collect_until_error(vendor.chat, ask())
        assert len(deltas) == 2
        assert isinstance(exc, UpstreamBadResponse)

    async def test_oversized_chunk(self, vendor: Vendor) -> None:
        """An event larger than the line limit raises UpstreamBadResponse instead of buffering it."""
        vendor.fake.inject(Fault.oversized_after(1, size=3 * 1024 * 1024))
        deltas, exc = await collect_until_error(vendor.chat, ask())
        assert len(deltas) == 1
        assert isinstance(exc, UpstreamBadResponse)

    async def test_retry_before_the_first_byte(self, vendor: Vendor) -> None:
        """A 503 on the initial request is retried (max_retries) and the answer then streams normally."""
        _, chat = vendor.make(max_retries=1)
        vendor.fake.inject(Fault.http_status(503, retry_after="0.01"))
        chunks = await collect(chat, ask())
        assert chunks[-1].finish_reason == "stop"
        assert len(vendor.fake.requests_to(vendor.chat_path)) == 2

    async def test_no_retry_once_the_body_started(self, vendor: Vendor) -> None:
        """A failure after the first token is raised, not retried, even with retries left."""
        _, chat = vendor.make(max_retries=2)
        vendor.fake.inject(Fault.drop_after(1))
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamUnavailable)
        assert len(vendor.fake.requests_to(vendor.chat_path)) == 1


class ProviderContract(EmbeddingContract, StreamingContract, StopContract, StreamFaultContract):
    """Everything an Embedder + ChatModel pair from a remote vendor must do."""
