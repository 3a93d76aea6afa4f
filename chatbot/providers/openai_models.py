"""OpenAI (and OpenAI-compatible servers: vLLM, Ollama, llama.cpp) behind the Embedder and ChatModel seams.

One AsyncOpenAI per process (build_openai_client, called once by providers/registry.py) serves both adapters.
Streaming posts the request body through the client's own `post` (the SDK's documented way to call an
endpoint with a body it does not type) and reads the raw SSE lines of the stream it returns, so the SDK still
does auth, base_url, retries (only before the body starts) and HTTP-status errors, but neither walks the
request through its typed-params transform (5% of the event loop's CPU at 50 conversations, py-spy; an
identity for the fields sent here, which tests/unit/test_openai_raw.py checks against the SDK's own) nor
parses each token into a pydantic model (a json.loads instead). Embeddings are posted the same way and read
from the JSON (read_embeddings: base64 float32 as embeddings.create asks, decoded as it decodes), without
its response models: 1.05 -> 0.80 ms of CPU per query embedding. Every failure leaves as a
chatbot.errors.Upstream* raised from the SDK error.
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, Literal

import httpx2  # openai 3.x's transport: what a raw stream raises mid-body is an httpx2 error, not httpx
import openai
from openai import AsyncOpenAI, RequestOptions
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from chatbot.errors import (
    ConfigError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from chatbot.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    EmbedKind,
    GenerationOptions,
    Tool,
    ToolCall,
)
from chatbot.providers.upstream_http import SSEEvents, aclose_iterator, error_for_status, shared_limiter
from chatbot.settings import OpenAISettings

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
EMBED_BATCH = 2048  # the API's limit on inputs per request
DRAIN_SECONDS = 0.1  # after [DONE], how long to wait for the end of the body (so the connection is reused)

log = logging.getLogger(__name__)


def build_openai_client(settings: OpenAISettings) -> AsyncOpenAI:
    """The process's one client; every knob comes from settings, none from the environment."""
    if settings.api_key is None:
        raise ConfigError("The openai provider needs an API key (OPENAI_API_KEY or CHATBOT_OPENAI__API_KEY).")
    return AsyncOpenAI(
        api_key=settings.api_key.get_secret_value(),
        base_url=settings.base_url or DEFAULT_BASE_URL,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        # the SDK's aiohttp transport: per streamed chunk it skips httpcore2's h11 parse and anyio cancel
        # scopes (embed + 50-token stream: 2.57 -> 1.75 ms of loop CPU); closed with the client
        http_client=openai.DefaultAioHttpClient() if settings.http_backend == "aiohttp" else None,
    )


class OpenAIEmbedder:
    """Dense embeddings from /embeddings. OpenAI embeddings are symmetric: `kind` changes nothing."""

    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(
        self, client: AsyncOpenAI, settings: OpenAISettings, *, limiter: asyncio.Semaphore | None = None
    ) -> None:
        self._client = client
        self._model = settings.embedding_model
        self.name = f"openai/{settings.embedding_model}"
        self.dimensions = settings.embedding_dimensions
        self._limiter = limiter or shared_limiter(client, settings.max_concurrency)

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:  # noqa: ARG002 - symmetric
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            vectors += await self._embed_batch(list(texts[start : start + EMBED_BATCH]))
        return vectors

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        # the body embeddings.create sends (base64: a quarter of the bytes of decimal floats), posted as it is
        body = {"model": self._model, "input": batch, "encoding_format": "base64"}
        try:
            async with self._limiter:
                response = await self._client.post(
                    "/embeddings", body=body, options=_BEARER, cast_to=httpx2.Response
                )
            vectors = read_embeddings(response.json())
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise translate_error(exc) from exc
        except ValueError as exc:  # a body that is not the documented shape (json, base64, types, keys)
            log.warning("openai embeddings: unreadable response: %r", exc)
            raise UpstreamBadResponse(provider=PROVIDER) from exc
        if len(vectors) != len(batch) or any(len(v) != self.dimensions for v in vectors):
            log.warning(
                "openai embeddings: asked for %d vectors of %d dimensions, got %s",
                len(batch),
                self.dimensions,
                sorted({len(v) for v in vectors}) if vectors else "none",
            )
            raise UpstreamBadResponse(provider=PROVIDER)
        return vectors


def read_embeddings(payload: Any) -> list[list[float]]:
    """The vectors of an /embeddings response in `index` order (the API promises `index`, not order), each
    base64 float32 (what we ask for) or a list of numbers (servers that ignore encoding_format), as the SDK
    reads them. ValueError for anything else."""
    try:
        items = sorted(payload["data"], key=lambda item: int(item["index"]))
        vectors = [_vector(item["embedding"]) for item in items]
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not an embeddings response: {exc!r}") from exc
    return vectors


def _vector(embedding: Any) -> list[float]:
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding, validate=True)
        if len(raw) % 4:
            raise ValueError("a base64 embedding is not whole float32 values")
        return array.array("f", raw).tolist()
    if isinstance(embedding, list) and all(type(x) is float or type(x) is int for x in embedding):
        return [float(x) for x in embedding]
    raise ValueError("an embedding is neither base64 nor a list of numbers")


class OpenAIChatModel:
    """Streams chat completions; closing the iterator (aclose, task cancel) closes the HTTP response.

    Hold the iterator in `contextlib.aclosing` when you may stop early: the concurrency slot and the
    connection are released when the generator is closed, not when it is garbage collected.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        settings: OpenAISettings,
        *,
        limiter: asyncio.Semaphore | None = None,
        max_context_tokens: int = 128_000,
    ) -> None:
        self._client = client
        self._model = settings.chat_model
        self.name = f"openai/{settings.chat_model}"
        self.max_context_tokens = max_context_tokens
        self._limiter = limiter or shared_limiter(client, settings.max_concurrency)

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async with self._limiter, contextlib.AsyncExitStack() as stack:
            try:
                stream = await self._client.post(
                    "/chat/completions",
                    body=chat_body(self._model, request),
                    options=_BEARER,
                    cast_to=object,
                    stream=True,
                    stream_cls=openai.AsyncStream[object],  # never iterated: its response is read raw below
                )
                stack.push_async_callback(stream.close)
                body = stream.response.aiter_bytes()
                stack.push_async_callback(aclose_iterator, body)  # runs before the response closes (LIFO)
                events = SSEEvents(PROVIDER)
                finish_reason: str | None = None
                usage: Any = None
                calls = _ToolCalls()
                done = False
                async for received in body:
                    for payload in events.feed(received):
                        if payload == b"[DONE]":
                            done = True
                            break
                        delta, finish, event_usage = _read_event(payload, calls)
                        if finish is not None:
                            finish_reason = finish
                        if event_usage is not None:
                            usage = event_usage
                        if delta:
                            yield ChatChunk(delta=delta)
                    if done:
                        break
                if not done:
                    log.warning("openai stream: the body ended before [DONE]")
                    raise UpstreamUnavailable(provider=PROVIDER)
                # Read the end of the chunked body so the connection goes back to the pool.
                with contextlib.suppress(TimeoutError, httpx2.HTTPError):
                    async with asyncio.timeout(DRAIN_SECONDS):
                        async for _ in body:
                            pass
                prompt_tokens, completion_tokens = _usage(usage)
                yield ChatChunk(
                    tool_calls=calls.finished(),
                    finish_reason=finish_reason,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
            except (openai.OpenAIError, httpx2.HTTPError) as exc:
                raise translate_error(exc) from exc


_BEARER: Final[RequestOptions] = {"security": {"bearer_auth": True}}  # what chat.completions.create sends


def chat_body(model: str, request: ChatRequest) -> dict[str, Any]:
    """The JSON body of a streamed chat completion, keys in the order chat.completions.create writes them;
    an unset option is not sent."""
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "messages": [_message(m) for m in [*request.messages, *request.continuation]],
    }
    if request.max_tokens is not None:
        # max_tokens, not max_completion_tokens: every OpenAI-compatible server knows it
        body["max_tokens"] = request.max_tokens
    options = _options(request.options)
    for key in ("response_format", "seed", "stop"):
        if key in options:
            body[key] = options[key]
    body["stream_options"] = {"include_usage": True}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    for key in ("tool_choice", "tools"):
        if key in options:
            body[key] = options[key]
    return body


def _options(options: GenerationOptions) -> dict[str, Any]:
    """The request's generation options as body fields; an unset option is not sent."""
    out: dict[str, Any] = {}
    if options.stop:
        out["stop"] = list(options.stop)
    if options.seed is not None:
        out["seed"] = options.seed
    if options.response_format is not None:
        out["response_format"] = dict(options.response_format)
    if options.tools:
        out["tools"] = [_tool(t) for t in options.tools]
    if options.tool_choice is not None:
        choice = options.tool_choice
        out["tool_choice"] = choice if isinstance(choice, str) else dict(choice)
    return out


def _tool(tool: Tool) -> ChatCompletionToolParam:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}  # type: ignore[typeddict-item]  # built field by field


def _message(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "tool":
        return {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id or ""}
    if message.role == "assistant":
        if message.tool_calls:
            return {
                "role": "assistant",
                "content": message.content or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in message.tool_calls
                ],
            }
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


class _ToolCalls:
    """Assembles streamed tool-call fragments (by index: the id and name once, arguments in pieces)."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]

    def feed(self, fragments: Any) -> None:
        for fragment in fragments:
            index = fragment["index"]
            call = self._calls.setdefault(int(index), ["", "", ""])
            function = fragment.get("function") or {}
            call[0] = fragment.get("id") or call[0]
            call[1] = function.get("name") or call[1]
            call[2] += function.get("arguments") or ""
            if not all(isinstance(part, str) for part in call):
                raise TypeError("a tool call fragment is not text")

    def finished(self) -> tuple[ToolCall, ...]:
        calls = tuple(ToolCall(c[0], c[1], c[2], index=i) for i, c in sorted(self._calls.items()))
        if any(not call.id or not call.name for call in calls):
            log.warning("openai stream: a tool call without id or name")
            raise UpstreamBadResponse(provider=PROVIDER)
        return calls


def _read_event(payload: bytes, calls: _ToolCalls) -> tuple[str | None, str | None, Any]:
    """One chat.completion.chunk -> (content delta, finish_reason, usage); tool-call fragments go to calls."""
    try:
        event = json.loads(payload)
        if event.get("error"):
            log.warning("openai stream: error event: %.500s", payload)
            raise UpstreamUnavailable(provider=PROVIDER)
        delta = finish = None
        if choices := event.get("choices"):
            choice = choices[0]
            message = choice.get("delta") or {}
            delta = message.get("content")
            if fragments := message.get("tool_calls"):
                calls.feed(fragments)
            finish = choice.get("finish_reason")
        usage = event.get("usage")
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        log.warning("openai stream: unreadable event: %.200r", payload)
        raise UpstreamBadResponse(provider=PROVIDER) from exc
    if not isinstance(delta, str | None) or not isinstance(finish, str | None):
        log.warning("openai stream: unexpected event shape: %.200r", payload)
        raise UpstreamBadResponse(provider=PROVIDER)
    return delta, finish, usage


def _usage(usage: Any) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else None, completion if isinstance(completion, int) else None)


def _timed_out(exc: BaseException) -> bool:
    """Whether a timeout error was caused by a timeout. The SDK's aiohttp transport raises httpx2's
    ConnectTimeout for any aiohttp ClientConnectionError, a refused or dropped connection included; a real
    timeout has a TimeoutError in its cause chain on either transport (asyncio's, aiohttp's, anyio's)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__
    return False


def translate_error(exc: Exception) -> UpstreamError:
    """The chatbot error for an SDK or transport exception. Details go to the log, never to the message."""
    if isinstance(exc, openai.APIStatusError):
        log.warning("openai: HTTP %s (request id %s): %.300s", exc.status_code, exc.request_id, exc.message)
        return error_for_status(PROVIDER, exc.status_code, exc.response.headers)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException) and _timed_out(exc):
        log.warning("openai: timed out: %r", exc)
        return UpstreamTimeout(provider=PROVIDER)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        log.warning("openai: connection failed (reported as a timeout): %r", exc.__cause__ or exc)
        return UpstreamUnavailable(provider=PROVIDER)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        log.warning("openai: connection failed: %r", exc)
        return UpstreamUnavailable(provider=PROVIDER)
    log.warning("openai: unreadable response: %r", exc)
    return UpstreamBadResponse(provider=PROVIDER)
