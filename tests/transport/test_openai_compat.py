"""The OpenAI-compatible API against the real app on hypercorn, with the official openai SDK as the client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI  # noqa: TID251 - tests drive the sync client too (in a thread)

from chatbot.api.auth import new_api_key
from chatbot.app import create_app
from chatbot.errors import UpstreamUnavailable
from chatbot.events import StoppedEvent
from chatbot.providers.base import ChatChunk, ChatRequest
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.openai_schema import check_chunk, check_completion
from tests.serving import serve_app

QUESTION = "How do I upload documents over HTTP?"
ASK = [{"role": "user", "content": QUESTION}]


class ScriptedChatModel:
    """A ChatModel that streams fixed tokens (optionally slowly), fails after `fail_after` tokens when told
    to, records every request and counts how often its stream was closed."""

    name = "scripted"
    max_context_tokens = 8192

    def __init__(
        self, tokens: int = 4, *, delay: float = 0.0, fail_after: int | None = None, text: str = "word"
    ) -> None:
        self.tokens = tokens
        self.delay = delay
        self.fail_after = fail_after
        self.text = text
        self.requests: list[ChatRequest] = []
        self.closed = asyncio.Event()

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.requests.append(request)
        try:
            for i in range(self.tokens):
                if i == self.fail_after:
                    raise UpstreamUnavailable(provider=self.name)
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield ChatChunk(delta=f"{self.text}{i} " if i < self.tokens - 1 else f"{self.text}{i} [1].")
            yield ChatChunk(finish_reason="stop", prompt_tokens=11, completion_tokens=self.tokens)
        finally:
            self.closed.set()


Stack = tuple[str, Services]
StackFactory = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


def stack_factory(offline_providers: Providers, guide_store: VectorStore) -> StackFactory:
    """Serve the app with the offline embedder, the guide store and a given chat model."""

    @contextlib.asynccontextmanager
    async def build(chat: ScriptedChatModel, **overrides: Any) -> AsyncIterator[Stack]:
        settings = make_settings(retrieval={"rewrite_followups": False}, **overrides)
        providers = Providers(
            embedder=offline_providers.embedder, sparse=offline_providers.sparse, chat=chat, reranker=None
        )
        async with (
            build_services(settings, providers=providers, store=guide_store) as svc,
            serve_app(create_app(settings, services=svc)) as url,
        ):
            yield url, svc

    return build


@pytest.fixture
def scripted_stack(offline_providers: Providers, guide_store: VectorStore) -> StackFactory:
    """Builds a served app around a scripted chat model."""
    return stack_factory(offline_providers, guide_store)


async def drain(stream: openai.AsyncStream[Any], into: list[Any]) -> None:
    async for chunk in stream:
        into.append(chunk)


def client_for(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0)


class TestCompletions:
    async def test_answer_with_sources_and_usage(self, served: str) -> None:
        """A non-streamed completion has the answer, sources on the message, finish_reason and usage."""
        async with client_for(served) as client:
            completion = await client.chat.completions.create(model="chatbot", messages=ASK)
        choice = completion.choices[0]
        assert choice.message.content is not None
        assert choice.message.content.startswith("From the documents")
        assert choice.finish_reason == "stop"
        assert completion.usage is not None
        assert completion.usage.total_tokens > 0
        sources = (choice.message.model_extra or {})["sources"]
        assert sources[0]["n"] == 1
        assert any("documents" in s["source"] for s in sources)
        assert completion.id.startswith("msg_")
        assert completion.model == "chatbot"
        assert completion._request_id

    async def test_sync_client(self, served: str) -> None:
        """The sync OpenAI client (in a thread) gets the same answer, streamed and not."""

        def ask() -> tuple[str | None, str]:
            with OpenAI(base_url=f"{served}/v1", api_key="not-needed", max_retries=0) as client:
                whole = client.chat.completions.create(model="chatbot", messages=ASK)
                stream = client.chat.completions.create(model="chatbot", messages=ASK, stream=True)
                streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            return whole.choices[0].message.content, streamed

        whole, streamed = await asyncio.to_thread(ask)
        assert whole
        assert streamed == whole


class TestStreaming:
    async def test_stream_reassembles_the_answer(self, served: str) -> None:
        """Chunks carry the role first, then text; the last choice chunk has finish_reason and sources; with
        include_usage a final chunk has no choices and the usage."""
        async with client_for(served) as client:
            whole = await client.chat.completions.create(model="chatbot", messages=ASK)
            stream = await client.chat.completions.create(
                model="chatbot",
                messages=ASK,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
        with_choices = [c for c in chunks if c.choices]
        assert with_choices[0].choices[0].delta.role == "assistant"
        assert (
            "".join(c.choices[0].delta.content or "" for c in with_choices)
            == whole.choices[0].message.content
        )
        final = with_choices[-1].choices[0]
        assert final.finish_reason == "stop"
        assert [c.choices[0].finish_reason for c in with_choices[:-1]] == [None] * (len(with_choices) - 1)
        assert (final.delta.model_extra or {})["sources"][0]["n"] == 1
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens > 0
        assert len({c.id for c in chunks}) == 1

    async def test_done_once_and_sse_headers(self, served: str) -> None:
        """The raw stream ends with exactly one `data: [DONE]` and carries the no-buffering headers."""
        body = {"model": "chatbot", "messages": ASK, "stream": True}
        async with (
            httpx.AsyncClient(base_url=served) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as r,
        ):
            text = (await r.aread()).decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        assert text.count("data: [DONE]") == 1
        assert text.endswith("data: [DONE]\n\n")

    async def test_slow_first_token_streams_with_keep_alives(self, scripted_stack: StackFactory) -> None:
        """Past one heartbeat interval without a token the stream starts anyway; the SDK skips keep-alives."""
        chat = ScriptedChatModel(tokens=3, delay=0.25)
        body = {"model": "chatbot", "messages": ASK, "stream": True}
        async with (
            scripted_stack(chat, stream={"heartbeat_seconds": 0.1}) as (url, _svc),
            httpx.AsyncClient(base_url=url) as http,
            client_for(url) as client,
        ):
            raw = (await http.post("/v1/chat/completions", json=body)).text
            stream = await client.chat.completions.create(model="chatbot", messages=ASK, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert raw.index(": keep-alive") < raw.index('"content":"word0 "')
        assert text == "word0 word1 word2 [1]."

    async def test_stream_helper_collects_sources(self, served: str) -> None:
        """The SDK's stream() helper accumulates the sources extension into the final message."""
        async with (
            client_for(served) as client,
            client.chat.completions.stream(model="chatbot", messages=ASK) as stream,
        ):
            final = await stream.get_final_completion()
        message = final.choices[0].message
        assert message.content
        assert (message.model_extra or {})["sources"][0]["n"] == 1


class TestConversation:
    async def test_history_is_passed_and_system_messages_ignored(self, scripted_stack: StackFactory) -> None:
        """Two turns: the second request carries the first turn as history; client system messages are not
        sent to the model (our prompts define the assistant); options pass through."""
        chat = ScriptedChatModel()
        system = {"role": "system", "content": "You are a pirate."}
        async with scripted_stack(chat) as (url, _svc), client_for(url) as client:
            first = await client.chat.completions.create(model="chatbot", messages=[system, *ASK])
            answer = first.choices[0].message.content
            second = await client.chat.completions.create(
                model="chatbot",
                messages=[
                    system,
                    *ASK,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": "And PDFs?"},
                ],
                max_completion_tokens=33,
                temperature=0.2,
            )
        assert second.choices[0].message.content == answer  # the scripted model says the same each time
        sent = chat.requests[1].messages
        assert [m.role for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[1].content == QUESTION
        assert sent[2].content == answer
        assert "And PDFs?" in sent[3].content
        assert not any("pirate" in m.content for r in chat.requests for m in r.messages)
        assert (chat.requests[1].max_tokens, chat.requests[1].temperature) == (33, 0.2)


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "error", "code"),
        [
            ({"messages": []}, openai.BadRequestError, "no_messages"),
            (
                {"messages": [{"role": "assistant", "content": "hi"}]},
                openai.BadRequestError,
                "last_message_not_user",
            ),
            ({"messages": [{"role": "user", "content": "   "}]}, openai.BadRequestError, "empty_message"),
            (
                {"messages": [{"role": "user", "content": "x" * 5000}]},
                openai.BadRequestError,
                "message_too_long",
            ),
            (
                {
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}
                    ]
                },
                openai.BadRequestError,
                "unsupported_content",
            ),
            ({"messages": ASK, "model": "gpt-4o"}, openai.NotFoundError, "model_not_found"),
        ],
        ids=["no-messages", "last-not-user", "empty", "too-long", "image", "unknown-model"],
    )
    async def test_bad_requests_raise_the_sdk_exception(
        self, served: str, kwargs: dict[str, Any], error: type[openai.APIStatusError], code: str
    ) -> None:
        """Each bad request raises the SDK's matching exception with our code and OpenAI's error fields."""
        async with client_for(served) as client:
            with pytest.raises(error) as info:
                await client.chat.completions.create(**{"model": "chatbot", **kwargs})
        assert info.value.code == code
        assert info.value.type in ("invalid_request_error",)
        assert info.value.param in ("messages", "model")

    async def test_invalid_json_body(self, served: str) -> None:
        """A body that is not JSON is a 400 in OpenAI's error shape."""
        async with httpx.AsyncClient(base_url=served) as http:
            r = await http.post(
                "/v1/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"}
            )
        assert r.status_code == 400
        assert r.json() == {
            "error": {
                "message": "The body is not valid JSON.",
                "type": "invalid_request_error",
                "code": "invalid_json",
                "param": None,
            }
        }

    async def test_native_routes_keep_their_error_shape(self, served: str) -> None:
        """The OpenAI error shape is scoped to its blueprint: /v1/chat still answers in ours."""
        async with httpx.AsyncClient(base_url=served) as http:
            r = await http.post("/v1/chat", content=b"{nope")
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid_json"
        assert "request_id" in r.json()["error"]

    async def test_models(self, served: str) -> None:
        """GET /v1/models lists 'chatbot'; retrieving another id is a NotFoundError."""
        async with client_for(served) as client:
            models = await client.models.list()
            assert [m.id for m in models.data] == ["chatbot"]
            assert (await client.models.retrieve("chatbot")).id == "chatbot"
            with pytest.raises(openai.NotFoundError):
                await client.models.retrieve("gpt-4o")

    async def test_api_key_is_the_sdk_api_key(self, scripted_stack: StackFactory) -> None:
        """With API keys configured, the SDK's api_key is ours: a wrong one raises AuthenticationError."""
        key, sha256 = new_api_key()
        keys = {"api_keys": [{"id": "sdk", "sha256": sha256, "tenant": "public", "roles": ["chat"]}]}
        async with scripted_stack(ScriptedChatModel(), auth=keys) as (url, _svc):
            async with AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
                answer = await client.chat.completions.create(model="chatbot", messages=ASK)
            async with client_for(url) as client:
                with pytest.raises(openai.AuthenticationError) as info:
                    await client.chat.completions.create(model="chatbot", messages=ASK)
        assert answer.choices[0].finish_reason == "stop"
        assert info.value.code == "unauthorized"
        assert info.value.type == "authentication_error"

    async def test_busy_is_a_rate_limit_error(self, scripted_stack: StackFactory) -> None:
        """Past the concurrent-answer limit the SDK raises RateLimitError, with Retry-After."""
        chat = ScriptedChatModel(tokens=200, delay=0.02)
        async with (
            scripted_stack(chat, limits={"max_answers_per_process": 1}) as (url, _svc),
            client_for(url) as client,
        ):
            stream = await client.chat.completions.create(model="chatbot", messages=ASK, stream=True)
            await anext(aiter(stream))
            with pytest.raises(openai.RateLimitError) as info:
                await client.chat.completions.create(model="chatbot", messages=ASK)
            await stream.close()
        assert info.value.code == "busy"
        assert info.value.type == "rate_limit_error"
        assert info.value.response.headers["retry-after"] == "1"

    async def test_failure_before_the_first_token_is_an_http_error(
        self, scripted_stack: StackFactory
    ) -> None:
        """An upstream failure before any token is a 502 (InternalServerError), streamed or not."""
        async with scripted_stack(ScriptedChatModel(fail_after=0)) as (url, _svc), client_for(url) as client:
            for stream in (False, True):
                with pytest.raises(openai.InternalServerError) as info:
                    await client.chat.completions.create(model="chatbot", messages=ASK, stream=stream)
                assert info.value.status_code == 502
                assert info.value.code == "upstream_unavailable"
                assert info.value.type == "server_error"

    async def test_failure_mid_stream_raises(self, scripted_stack: StackFactory) -> None:
        """An upstream failure after tokens makes the SDK raise APIError mid-stream; no finish is seen."""
        chunks = []
        async with (
            scripted_stack(ScriptedChatModel(tokens=6, fail_after=3)) as (url, _svc),
            client_for(url) as client,
        ):
            stream = await client.chat.completions.create(model="chatbot", messages=ASK, stream=True)
            with pytest.raises(openai.APIError) as info:
                await drain(stream, chunks)
        assert not isinstance(info.value, openai.APIStatusError)
        assert info.value.code == "upstream_unavailable"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "word0 word1 word2 "
        assert all(c.choices[0].finish_reason is None for c in chunks)


class TestStopAndDisconnect:
    async def test_stop_endpoint_ends_the_stream_cancelled(self, scripted_stack: StackFactory) -> None:
        """POST /v1/chat/{id}/stop with the completion id: finish_reason 'cancelled', upstream closed."""
        chat = ScriptedChatModel(tokens=500, delay=0.01)
        async with (
            scripted_stack(chat) as (url, _svc),
            client_for(url) as client,
            httpx.AsyncClient(base_url=url) as http,
        ):
            stream = await client.chat.completions.create(model="chatbot", messages=ASK, stream=True)
            first = await anext(aiter(stream))
            r = await http.post(f"/v1/chat/{first.id}/stop")
            assert r.json() == {"message_id": first.id, "stopped": True}
            rest = [chunk async for chunk in stream]
        assert rest[-1].choices[0].finish_reason == "cancelled"
        assert len(rest) < 500
        await asyncio.wait_for(chat.closed.wait(), 2)

    async def test_disconnect_stops_the_answer(self, scripted_stack: StackFactory) -> None:
        """A client that closes the stream stops the answer at once (it cannot resume): upstream closed."""
        chat = ScriptedChatModel(tokens=500, delay=0.01)
        async with scripted_stack(chat) as (url, svc):
            async with client_for(url) as client:
                stream = await client.chat.completions.create(model="chatbot", messages=ASK, stream=True)
                first = await anext(aiter(stream))
                await stream.close()
            await asyncio.wait_for(chat.closed.wait(), 2)
            events = [event async for _seq, event in svc.answers.log.read(first.id, "public")]
        assert events[-1] == StoppedEvent(reason="disconnected")


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
TOOL_LOOP = [
    *ASK,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


class TestOfflineOptions:
    """The extractive model honours max_tokens, stop and seed; it refuses what it cannot do, naming it."""

    @pytest.mark.parametrize(
        ("kwargs", "param"),
        [
            ({"tools": [WEATHER_TOOL]}, "tools"),
            ({"tools": [WEATHER_TOOL], "tool_choice": "required"}, "tools"),
            ({"tool_choice": "required"}, "tool_choice"),
            ({"response_format": {"type": "json_object"}}, "response_format"),
            (
                {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
                "response_format",
            ),
            ({"n": 2}, "n"),
            ({"messages": TOOL_LOOP}, "messages"),
        ],
        ids=["tools", "tools-required", "tool-choice", "json-object", "json-schema", "n", "tool-messages"],
    )
    async def test_unsupported_options_are_named_400s(
        self, served: str, kwargs: dict[str, Any], param: str
    ) -> None:
        """Each option the extractive model cannot honour is a BadRequestError whose param names it."""
        async with client_for(served) as client:
            for stream in (False, True):
                with pytest.raises(openai.BadRequestError) as info:
                    await client.chat.completions.create(
                        **{"model": "chatbot", "messages": ASK, "stream": stream, **kwargs}
                    )
                assert info.value.param == param
                assert info.value.type == "invalid_request_error"
                assert param in info.value.message

    async def test_max_tokens_truncates_with_length(self, served: str) -> None:
        """max_tokens cuts the answer to that many word pieces, finish_reason 'length', streamed or not."""
        async with client_for(served) as client:
            whole = await client.chat.completions.create(model="chatbot", messages=ASK)
            cut = await client.chat.completions.create(model="chatbot", messages=ASK, max_tokens=5)
            stream = await client.chat.completions.create(
                model="chatbot", messages=ASK, max_completion_tokens=5, stream=True
            )
            chunks = [c async for c in stream if c.choices]
        full = whole.choices[0].message.content or ""
        text = cut.choices[0].message.content or ""
        assert len(text.split()) == 5
        assert full.startswith(text)
        assert cut.choices[0].finish_reason == "length"
        assert cut.usage is not None
        assert cut.usage.completion_tokens == 5
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
        assert chunks[-1].choices[0].finish_reason == "length"

    async def test_a_long_enough_limit_stops_normally(self, served: str) -> None:
        """A max_tokens the answer fits in changes nothing: whole text, finish_reason 'stop'."""
        async with client_for(served) as client:
            whole = await client.chat.completions.create(model="chatbot", messages=ASK)
            roomy = await client.chat.completions.create(model="chatbot", messages=ASK, max_tokens=100_000)
        assert roomy.choices[0].message.content == whole.choices[0].message.content
        assert roomy.choices[0].finish_reason == "stop"

    async def test_stop_sequence_ends_before_it(self, served: str) -> None:
        """The answer ends right before the first stop sequence (not included), finish_reason 'stop'."""
        async with client_for(served) as client:
            whole = await client.chat.completions.create(model="chatbot", messages=ASK)
            full = whole.choices[0].message.content or ""
            stop = full[40:48]
            cut = await client.chat.completions.create(
                model="chatbot", messages=ASK, stop=["never there", stop]
            )
            stream = await client.chat.completions.create(
                model="chatbot", messages=ASK, stop=stop, stream=True
            )
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert cut.choices[0].message.content == full[: full.index(stop)]
        assert cut.choices[0].finish_reason == "stop"
        assert streamed == full[: full.index(stop)]

    async def test_seed_is_honoured(self, served: str) -> None:
        """The extractive model is deterministic: a seed is accepted and two seeded answers are equal."""
        async with client_for(served) as client:
            answers = [
                await client.chat.completions.create(model="chatbot", messages=ASK, seed=7) for _ in range(2)
            ]
        assert answers[0].choices[0].message.content == answers[1].choices[0].message.content

    async def test_completions_and_chunks_are_schema_valid(self, served: str) -> None:
        """Every offline response and chunk (with usage, with a length cut) passes OpenAI's chat schema."""
        body = {"model": "chatbot", "messages": ASK}
        async with httpx.AsyncClient(base_url=served) as http:
            for extra in ({}, {"max_tokens": 3}):
                check_completion((await http.post("/v1/chat/completions", json={**body, **extra})).json())
                streamed = {**body, **extra, "stream": True, "stream_options": {"include_usage": True}}
                async with http.stream("POST", "/v1/chat/completions", json=streamed) as r:
                    text = (await r.aread()).decode()
                blocks = [b[len("data: ") :] for b in text.split("\n\n") if b.startswith("data: {")]
                assert blocks
                for block in blocks:
                    check_chunk(json.loads(block))


class TestOpenAPIDocument:
    async def test_served_model_id_is_an_enum(self, served: str) -> None:
        """/openapi.json gives the request's `model` as the enum ['chatbot'] and documents the new options."""
        async with httpx.AsyncClient(base_url=served) as http:
            document = (await http.get("/openapi.json")).json()
        body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
        name = body["schema"]["$ref"].rsplit("/", 1)[-1]
        properties = document["components"]["schemas"][name]["properties"]
        assert properties["model"]["enum"] == ["chatbot"]
        assert {"tools", "tool_choice", "stop", "seed", "response_format", "n"} <= set(properties)
