"""The OpenAI adapters through the real openai SDK against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI

from chatbot.errors import ConfigError, UpstreamBadResponse, UpstreamTimeout, UpstreamUnavailable
from chatbot.providers.base import ChatMessage, GenerationOptions, Tool, ToolCall
from chatbot.providers.openai_models import OpenAIChatModel, _read_event, _ToolCalls, build_openai_client
from chatbot.settings import OpenAISettings
from tests.fakes import FakeOpenAI, Fault, Reply, embed_text
from tests.fakes.openai_api import TOOL_ARGUMENTS, TOOL_CALL_ID
from tests.loopback.contract import API_KEY, ProviderContract, Vendor, ask, collect, collect_until_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vendor(openai_vendor: Vendor) -> Vendor:
    return openai_vendor


@pytest.fixture
async def client(openai_settings: OpenAISettings) -> AsyncIterator[AsyncOpenAI]:
    client = build_openai_client(openai_settings)
    yield client
    await client.close()


class TestOpenAIContract(ProviderContract):
    """The shared provider contract, for OpenAI."""


class TestBuildClient:
    async def test_knobs_come_from_settings(
        self, openai_settings: OpenAISettings, client: AsyncOpenAI
    ) -> None:
        """base_url, timeout and max_retries are passed to the SDK explicitly."""
        assert str(client.base_url).rstrip("/") == openai_settings.base_url
        assert client.timeout == openai_settings.timeout
        assert client.max_retries == openai_settings.max_retries

    def test_a_key_is_required(self) -> None:
        """Building a client without an API key is a ConfigError."""
        with pytest.raises(ConfigError):
            build_openai_client(OpenAISettings(api_key=None))


class TestEmbeddings:
    async def test_vectors_follow_index_not_arrival_order(self, vendor: Vendor) -> None:
        """Vectors are matched to texts by the `index` field even when the data comes back reversed."""
        vendor.fake.reverse_embeddings = True
        texts = ["first text", "second text", "third one"]
        vectors = await vendor.embedder.embed(texts, "document")
        assert vectors == [pytest.approx(embed_text(t, 1536), abs=1e-6) for t in texts]

    async def test_large_batches_are_split(self, vendor: Vendor) -> None:
        """More texts than one request may carry go in several requests, order kept."""
        vendor.fake.dimensions = 4
        embedder, _ = vendor.make(embedding_dimensions=4)
        texts = [f"text {i}" for i in range(2100)]
        vectors = await embedder.embed(texts, "document")
        assert [len(b["input"]) for b in vendor.fake.requests_to("/v1/embeddings")] == [2048, 52]
        assert vectors[2099] == pytest.approx(embed_text("text 2099", 4), abs=1e-6)

    async def test_wrong_dimensions_are_refused(self, vendor: Vendor) -> None:
        """Vectors of another size than settings say are an UpstreamBadResponse, not a corrupt collection."""
        vendor.fake.dimensions = 8
        with pytest.raises(UpstreamBadResponse):
            await vendor.embedder.embed(["hello"], "query")

    async def test_request_names_the_model(self, vendor: Vendor, openai_settings: OpenAISettings) -> None:
        """The request carries the configured embedding model and the texts."""
        await vendor.embedder.embed(["a", "b"], "query")
        [body] = vendor.fake.requests_to("/v1/embeddings")
        assert body["model"] == openai_settings.embedding_model
        assert body["input"] == ["a", "b"]


class TestStreaming:
    async def test_asks_for_usage(self, vendor: Vendor, openai_settings: OpenAISettings) -> None:
        """The stream request names the chat model and sets stream_options.include_usage."""
        await collect(vendor.chat, ask())
        [body] = vendor.fake.requests_to("/v1/chat/completions")
        assert body["model"] == openai_settings.chat_model
        assert body["stream_options"] == {"include_usage": True}

    @pytest.mark.parametrize(
        "reply",
        [
            Reply(tokens=300, prompt_tokens=57),
            Reply(text="Naïve café — 東京 🚀 [1]. " * 9, finish_reason="length"),
        ],
        ids=["ascii-300-tokens", "unicode-length"],
    )
    async def test_raw_path_matches_the_sdk_iterator(
        self, vendor: Vendor, client: AsyncOpenAI, openai_settings: OpenAISettings, reply: Reply
    ) -> None:
        """Raw line parsing and the SDK's own stream=True iterator read the same text, usage and finish."""
        vendor.fake.reply = reply
        chunks = await collect(vendor.chat, ask())
        ours = (
            "".join(c.delta for c in chunks),
            chunks[-1].finish_reason,
            chunks[-1].prompt_tokens,
            chunks[-1].completion_tokens,
        )

        text, finish, usage = "", None, None
        stream = await client.chat.completions.create(
            model=openai_settings.chat_model,
            messages=[
                {"role": "system", "content": "Answer from the sources."},
                {"role": "user", "content": "Where does the setting live?"},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream:
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
                if chunk.usage is not None:
                    usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        assert usage is not None
        assert ours == (text, finish, *usage)


class TestFakeModes:
    async def test_a_header_scripts_a_fault(self, client: AsyncOpenAI) -> None:
        """A request may carry its own fault in the x-fake-fault header."""
        with pytest.raises(openai.RateLimitError) as caught:
            await client.embeddings.create(
                input=["hello"], model="m", extra_headers={"x-fake-fault": "status=429;retry_after=3"}
            )
        assert caught.value.response.headers["retry-after"] == "3"

    async def test_fake_on_a_background_thread(self) -> None:
        """The fake also runs on its own loop in a thread, and records streams the same way."""
        with FakeOpenAI(api_key=API_KEY) as fake:
            settings = OpenAISettings(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
            client = build_openai_client(settings)
            try:
                chunks = await collect(OpenAIChatModel(client, settings), ask())
                record = await fake.wait_stream_ended(within=1.0)
            finally:
                await client.close()
        assert chunks[-1].finish_reason == "stop"
        assert record.completed

    async def test_standalone_process(self) -> None:
        """`python -m tests.fakes.upstream` serves on the given port with its token and latency knobs."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.fakes.upstream",
            "--port",
            "0",
            "--tokens",
            "7",
            "--token-ms",
            "1",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            banner = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
            match = re.search(r"OpenAI base_url (\S+),", banner)
            assert match, banner
            settings = OpenAISettings(api_key=API_KEY, base_url=match.group(1), max_retries=0)
            client = build_openai_client(settings)
            try:
                chunks = await collect(OpenAIChatModel(client, settings), ask())
            finally:
                await client.close()
        finally:
            process.terminate()
            await process.wait()
        assert chunks[-1].completion_tokens == 7


class TestToolsAndOptions:
    async def test_streamed_tool_call_fragments_are_assembled(self, vendor: Vendor) -> None:
        """The id and name, then the arguments in fragments, come out as one whole ToolCall at the end."""
        tools = (Tool("get_weather", "The weather.", {"type": "object"}),)
        chunks = await collect(vendor.chat, ask(options=GenerationOptions(tools=tools)))
        assert [c.delta for c in chunks if c.delta] == []
        assert chunks[-1].tool_calls == (ToolCall(TOOL_CALL_ID, "get_weather", TOOL_ARGUMENTS, index=0),)
        assert chunks[-1].finish_reason == "tool_calls"

    async def test_options_and_tool_messages_are_sent(self, vendor: Vendor) -> None:
        """stop, seed, response_format, tools, tool_choice and the continuation reach the request body."""
        call = ToolCall("call_9", "get_weather", '{"city":"Oslo"}')
        options = GenerationOptions(
            stop=("END",),
            seed=3,
            response_format={"type": "json_object"},
            tools=(Tool("get_weather", parameters={"type": "object"}, strict=True),),
            tool_choice="required",
        )
        continuation = (
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", "rain", tool_call_id="call_9"),
        )
        chunks = await collect(vendor.chat, ask(options=options, continuation=continuation))
        body = vendor.fake.requests[-1].json()
        assert (body["stop"], body["seed"], body["response_format"], body["tool_choice"]) == (
            ["END"],
            3,
            {"type": "json_object"},
            "required",
        )
        assert body["tools"] == [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True},
            }
        ]
        assert body["messages"][-2:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "content": "rain", "tool_call_id": "call_9"},
        ]
        assert "".join(c.delta for c in chunks)  # the tool result is in: the fake answers with text

    async def test_plain_requests_send_no_options(self, vendor: Vendor) -> None:
        """Without options, none of stop, seed, response_format, tools or tool_choice is sent."""
        await collect(vendor.chat, ask())
        body = vendor.fake.requests[-1].json()
        assert not {"stop", "seed", "response_format", "tools", "tool_choice"} & set(body)

    @pytest.mark.parametrize(
        "fragments",
        [
            b'[{"function": {"arguments": "{}"}}]',  # no index
            b'[{"index": 0, "function": {"arguments": 5}}]',  # arguments not text
            b'"not a list of fragments"',
            b'[{"index": 0, "function": {"arguments": "{}"}}]',  # never an id or a name
        ],
        ids=["no-index", "number-arguments", "not-a-list", "no-id"],
    )
    def test_malformed_tool_fragments_are_bad_responses(self, fragments: bytes) -> None:
        """A tool-call fragment that is not OpenAI's shape is UpstreamBadResponse, never a crash."""
        payload = b'{"choices": [{"delta": {"tool_calls": ' + fragments + b'}, "finish_reason": null}]}'

        def read() -> tuple[ToolCall, ...]:
            calls = _ToolCalls()
            _read_event(payload, calls)
            return calls.finished()

        with pytest.raises(UpstreamBadResponse):
            read()


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
class TestHttpBackends:
    """Both of the SDK's transports (openai.http_backend) read the same and fail the same way."""

    async def test_same_text_usage_and_vectors(self, vendor: Vendor, backend: str) -> None:
        """A streamed answer and an embedding read identically on either transport."""
        vendor.fake.reply = Reply(text=("Naïve café — 東京 🚀 [1]. " * 9).strip(), prompt_tokens=12)
        embedder, chat = vendor.make(http_backend=backend)
        chunks = await collect(chat, ask())
        assert "".join(c.delta for c in chunks) == vendor.fake.reply.text
        assert chunks[-1].prompt_tokens == 12
        assert await embedder.embed(["hello"], "query") == [
            pytest.approx(embed_text("hello", 1536), abs=1e-6)
        ]

    async def test_refused_and_dropped_connections_are_unavailable_not_timeouts(
        self, vendor: Vendor, backend: str, unused_tcp_port: int
    ) -> None:
        """The aiohttp transport reports a refused or dropped connection as ConnectTimeout; we do not."""
        closed = vendor.fake.base_url.replace(vendor.fake.origin, f"http://127.0.0.1:{unused_tcp_port}")
        embedder, chat = vendor.make(base_url=closed, http_backend=backend)
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamUnavailable)
        embedder, _ = vendor.make(http_backend=backend)
        vendor.fake.inject(Fault.drop_after(0))
        with pytest.raises(UpstreamUnavailable):
            await embedder.embed(["hello"], "query")

    async def test_a_real_timeout_stays_a_timeout(self, vendor: Vendor, backend: str) -> None:
        """No first chunk within the SDK timeout is an UpstreamTimeout on either transport."""
        _, chat = vendor.make(timeout=0.2, http_backend=backend)
        vendor.fake.inject(Fault.slow_first_chunk(2.0))
        _, exc = await collect_until_error(chat, ask())
        assert isinstance(exc, UpstreamTimeout)
