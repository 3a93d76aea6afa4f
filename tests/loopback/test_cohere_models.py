"""The Cohere adapters through the real cohere SDK against the fake Cohere server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import cohere
import pytest

from chatbot.errors import ConfigError, UpstreamRateLimited, UpstreamUnavailable
from chatbot.providers.base import GenerationOptions, Reranker, Tool, UnsupportedOption
from chatbot.providers.cohere_models import CohereReranker, build_cohere_client
from chatbot.settings import CohereSettings
from tests.fakes import FakeUpstream, Fault, Reply, embed_text
from tests.loopback.contract import ProviderContract, Vendor, ask, collect, collect_until_error

PASSAGES = [
    "Bananas are yellow and grow in bunches.",
    "Set CHATBOT_QDRANT__URL to point the server at a Qdrant instance.",
    "The qdrant url and the qdrant api key are read at start-up.",
    "Paris is the capital of France.",
]


@pytest.fixture
def vendor(cohere_vendor: Vendor) -> Vendor:
    return cohere_vendor


@pytest.fixture
async def client(cohere_settings: CohereSettings) -> AsyncIterator[cohere.AsyncClientV2]:
    async with build_cohere_client(cohere_settings) as client:
        yield client


@pytest.fixture
def reranker(client: cohere.AsyncClientV2, cohere_settings: CohereSettings) -> CohereReranker:
    return CohereReranker(client, cohere_settings)


class TestCohereContract(ProviderContract):
    """The shared provider contract, for Cohere."""


class TestBuildClient:
    def test_a_key_is_required(self) -> None:
        """Building a client without an API key is a ConfigError."""
        with pytest.raises(ConfigError):
            build_cohere_client(CohereSettings(api_key=None))


class TestEmbed:
    @pytest.mark.parametrize(
        ("kind", "input_type"), [("query", "search_query"), ("document", "search_document")]
    )
    async def test_input_type_follows_kind(self, vendor: Vendor, kind: str, input_type: str) -> None:
        """Queries are embedded as search_query, documents as search_document, as float vectors."""
        await vendor.embedder.embed(["hello"], kind)  # type: ignore[arg-type]
        [body] = vendor.fake.requests_to("/v2/embed")
        assert body["input_type"] == input_type
        assert body["embedding_types"] == ["float"]
        assert body["model"] == "embed-english-v3.0"

    async def test_batches_of_96_keep_order(self, vendor: Vendor) -> None:
        """More than 96 texts go in several requests and come back in input order."""
        texts = [f"passage {i} on subject {i % 7}" for i in range(200)]
        vectors = await vendor.embedder.embed(texts, "document")
        assert [len(b["texts"]) for b in vendor.fake.requests_to("/v2/embed")] == [96, 96, 8]
        for i in (0, 95, 96, 199):
            assert vectors[i] == pytest.approx(embed_text(texts[i], 1024), abs=1e-6)


class TestRerank:
    async def test_is_a_reranker(self, reranker: CohereReranker) -> None:
        """The reranker satisfies the Protocol and is named after its model."""
        assert isinstance(reranker, Reranker)
        assert reranker.name == "cohere/rerank-english-v3.0"

    async def test_returns_indices_by_relevance(
        self, reranker: CohereReranker, fake_cohere: FakeUpstream
    ) -> None:
        """Rerank returns the top_n passage indices, most relevant first, with their scores."""
        ranked = await reranker.rerank("what is the qdrant url", PASSAGES, top_n=2)
        assert [r.index for r in ranked] == [2, 1]
        assert ranked[0].score >= ranked[1].score
        [body] = fake_cohere.requests_to("/v2/rerank")
        assert body["documents"] == PASSAGES
        assert body["top_n"] == 2

    async def test_top_n_is_capped(self, reranker: CohereReranker) -> None:
        """Asking for more than there are returns every passage once."""
        ranked = await reranker.rerank("qdrant", PASSAGES, top_n=50)
        assert sorted(r.index for r in ranked) == [0, 1, 2, 3]

    async def test_nothing_to_rerank_sends_nothing(
        self, reranker: CohereReranker, fake_cohere: FakeUpstream
    ) -> None:
        """No passages means no request and no results."""
        assert await reranker.rerank("anything", [], top_n=3) == []
        assert not fake_cohere.requests

    async def test_rate_limit(self, reranker: CohereReranker, fake_cohere: FakeUpstream) -> None:
        """A 429 from rerank is UpstreamRateLimited with its Retry-After."""
        fake_cohere.inject(Fault.http_status(429, retry_after="4"))
        with pytest.raises(UpstreamRateLimited) as caught:
            await reranker.rerank("qdrant", PASSAGES, top_n=2)
        assert caught.value.retry_after == 4.0


class TestStreaming:
    async def test_error_finish_is_an_error(self, vendor: Vendor) -> None:
        """A stream that ends with finish_reason ERROR raises instead of looking complete."""
        vendor.fake.reply = Reply(text="partial", finish_reason="ERROR")
        deltas, exc = await collect_until_error(vendor.chat, ask())
        assert deltas == ["partial"]
        assert isinstance(exc, UpstreamUnavailable)

    async def test_long_retry_after_is_not_waited_for(self, vendor: Vendor) -> None:
        """A 429 asking for a long wait is raised at once (with retry_after), not retried in place."""
        _, chat = vendor.make(max_retries=2)
        vendor.fake.inject(Fault.http_status(429, retry_after="60"))
        started = time.monotonic()
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamRateLimited)
        assert exc.retry_after == 60.0
        assert time.monotonic() - started < 5
        assert len(vendor.fake.requests_to("/v2/chat")) == 1

    @pytest.mark.parametrize(
        "reply",
        [
            Reply(tokens=300, prompt_tokens=57),
            Reply(text="Naïve café — 東京 🚀 [1]. " * 9, finish_reason="length"),
        ],
        ids=["ascii-300-tokens", "unicode-length"],
    )
    async def test_raw_path_matches_the_sdk_iterator(
        self, vendor: Vendor, client: cohere.AsyncClientV2, reply: Reply
    ) -> None:
        """Raw line parsing and the SDK's chat_stream read the same text, usage and finish."""
        vendor.fake.reply = reply
        chunks = await collect(vendor.chat, ask())
        ours = (
            "".join(c.delta for c in chunks),
            chunks[-1].finish_reason,
            chunks[-1].prompt_tokens,
            chunks[-1].completion_tokens,
        )
        text, finish, usage = await _sdk_stream(client)
        assert usage is not None
        assert ours == (text, {"COMPLETE": "stop", "MAX_TOKENS": "length"}[finish or ""], *usage)

    async def test_sdk_iterator_skips_malformed_events_ours_does_not(
        self, vendor: Vendor, client: cohere.AsyncClientV2
    ) -> None:
        """The SDK's chat_stream logs and skips an event that is not JSON; the adapter raises instead."""
        vendor.fake.inject(Fault.malformed_after(2), Fault.malformed_after(2))
        text, finish, _ = await _sdk_stream(client)
        assert finish == "COMPLETE"  # the broken stream looks complete through the SDK's iterator
        assert text
        _, exc = await collect_until_error(vendor.chat, ask())
        assert exc.code == "upstream_bad_response"


async def _sdk_stream(client: cohere.AsyncClientV2) -> tuple[str, str | None, tuple[int, int] | None]:
    text, finish, usage = "", None, None
    async for event in client.chat_stream(
        model="command-r-08-2024",
        messages=[
            cohere.SystemChatMessageV2(content="Answer from the sources."),
            cohere.UserChatMessageV2(content="Where does the setting live?"),
        ],
    ):
        if (
            event.type == "content-delta"
            and event.delta
            and event.delta.message
            and event.delta.message.content
        ):
            text += event.delta.message.content.text or ""
        if event.type == "message-end" and event.delta:
            finish = event.delta.finish_reason
            tokens = event.delta.usage.tokens if event.delta.usage else None
            if tokens is not None:
                usage = (int(tokens.input_tokens or 0), int(tokens.output_tokens or 0))
    return text, finish, usage


class TestGenerationOptions:
    async def test_stop_and_seed_are_sent(self, vendor: Vendor) -> None:
        """stop becomes stop_sequences and seed is passed as is."""
        await collect(vendor.chat, ask(options=GenerationOptions(stop=("END",), seed=5)))
        body = vendor.fake.requests[-1].json()
        assert (body["stop_sequences"], body["seed"]) == (["END"], 5)

    @pytest.mark.parametrize(
        ("options", "param"),
        [
            (GenerationOptions(tools=(Tool("f"),)), "tools"),
            (GenerationOptions(response_format={"type": "json_object"}), "response_format"),
        ],
        ids=["tools", "response-format"],
    )
    async def test_unmapped_options_are_refused_by_name(
        self, vendor: Vendor, options: GenerationOptions, param: str
    ) -> None:
        """Tools and response formats are not mapped to Cohere's: a 400 naming the option, nothing sent."""
        sent = len(vendor.fake.requests)
        with pytest.raises(UnsupportedOption) as info:
            await collect(vendor.chat, ask(options=options))
        assert info.value.details == {"param": param}
        assert len(vendor.fake.requests) == sent
