"""Cohere (v2 API) behind the Embedder, ChatModel and Reranker seams, through one cohere.AsyncClientV2.

Streaming uses the SDK's raw access (`with_raw_response.chat_stream`): the SDK builds the request, sends
auth and maps HTTP statuses to its errors, and we read the SSE lines ourselves. That is cheaper per token
than its pydantic events, and stricter: the SDK's own iterator logs and skips an event that is not JSON,
which would turn a broken stream into a silently shorter answer. The SDK does not retry streams, so
opening one is retried here (settings.max_retries), before the first byte of the body only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import cohere
import httpx
from cohere.core.api_error import ApiError
from cohere.core.parse_error import ParsingError
from cohere.v2.raw_client import OMIT  # the SDK's "leave this field out" (None would be sent as null)

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
    RankedPassage,
    check_options,
)
from chatbot.providers.upstream_http import (
    SSEEvents,
    aclose_iterator,
    error_for_status,
    retry_after,
    shared_limiter,
)
from chatbot.settings import CohereSettings

PROVIDER = "cohere"
SUPPORTED_OPTIONS = frozenset({"stop", "seed"})  # passed as stop_sequences and seed
DEFAULT_BASE_URL = "https://api.cohere.com"
EMBED_BATCH = 96  # the API's limit on texts per embed request
DRAIN_SECONDS = (
    0.1  # after message-end, how long to wait for the end of the body (so the connection is reused)
)
MAX_RETRY_WAIT = 8.0  # a Retry-After longer than this is the caller's to honour, not ours
SDK_ERRORS = (ApiError, ParsingError, httpx.HTTPError)

log = logging.getLogger(__name__)

_FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def build_cohere_client(settings: CohereSettings) -> cohere.AsyncClientV2:
    """The process's one client; every knob comes from settings, none from the environment."""
    if settings.api_key is None:
        raise ConfigError("The cohere provider needs an API key (COHERE_API_KEY or CHATBOT_COHERE__API_KEY).")
    return cohere.AsyncClientV2(
        api_key=settings.api_key.get_secret_value(),
        base_url=settings.base_url or DEFAULT_BASE_URL,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )


class CohereEmbedder:
    """Dense embeddings from /v2/embed; queries and documents are embedded as Cohere asks (input_type)."""

    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(
        self,
        client: cohere.AsyncClientV2,
        settings: CohereSettings,
        *,
        limiter: asyncio.Semaphore | None = None,
    ) -> None:
        self._client = client
        self._model = settings.embedding_model
        self.name = f"cohere/{settings.embedding_model}"
        self.dimensions = settings.embedding_dimensions
        self._limiter = limiter or shared_limiter(client, settings.max_concurrency)

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        input_type: Literal["search_query", "search_document"] = (
            "search_query" if kind == "query" else "search_document"
        )
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = list(texts[start : start + EMBED_BATCH])
            try:
                async with self._limiter:
                    response = await self._client.embed(
                        model=self._model, texts=batch, input_type=input_type, embedding_types=["float"]
                    )
            except SDK_ERRORS as exc:
                raise translate_error(exc) from exc
            floats = response.embeddings.float_ or []
            if len(floats) != len(batch) or any(len(vector) != self.dimensions for vector in floats):
                log.warning(
                    "cohere embed: asked for %d vectors of %d dimensions, got %s",
                    len(batch),
                    self.dimensions,
                    sorted({len(vector) for vector in floats}) if floats else "none",
                )
                raise UpstreamBadResponse(provider=PROVIDER)
            vectors += floats
        return vectors


class CohereReranker:
    """Orders passages by relevance to the query with /v2/rerank."""

    def __init__(
        self,
        client: cohere.AsyncClientV2,
        settings: CohereSettings,
        *,
        limiter: asyncio.Semaphore | None = None,
    ) -> None:
        self._client = client
        self._model = settings.rerank_model
        self.name = f"cohere/{settings.rerank_model}"
        self._limiter = limiter or shared_limiter(client, settings.max_concurrency)

    async def rerank(self, query: str, passages: Sequence[str], top_n: int) -> list[RankedPassage]:
        if not passages or top_n <= 0:
            return []
        try:
            async with self._limiter:
                response = await self._client.rerank(
                    model=self._model, query=query, documents=list(passages), top_n=min(top_n, len(passages))
                )
        except SDK_ERRORS as exc:
            raise translate_error(exc) from exc
        ranked = [RankedPassage(index=r.index, score=r.relevance_score) for r in response.results]
        if any(not 0 <= r.index < len(passages) for r in ranked):
            log.warning("cohere rerank: an index outside 0..%d", len(passages) - 1)
            raise UpstreamBadResponse(provider=PROVIDER)
        return ranked


class CohereChatModel:
    """Streams /v2/chat; closing the iterator (aclose, task cancel) closes the HTTP response.

    Hold the iterator in `contextlib.aclosing` when you may stop early: the concurrency slot and the
    connection are released when the generator is closed, not when it is garbage collected.
    """

    def __init__(
        self,
        client: cohere.AsyncClientV2,
        settings: CohereSettings,
        *,
        limiter: asyncio.Semaphore | None = None,
        max_context_tokens: int = 128_000,
    ) -> None:
        self._client = client
        self._model = settings.chat_model
        self._max_retries = settings.max_retries
        self.name = f"cohere/{settings.chat_model}"
        self.max_context_tokens = max_context_tokens
        self._limiter = limiter or shared_limiter(client, settings.max_concurrency)

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async with self._limiter, contextlib.AsyncExitStack() as stack:
            try:
                response = await self._open_stream(stack, request)
                body = response.aiter_bytes()
                stack.push_async_callback(aclose_iterator, body)  # runs before the response closes (LIFO)
                events = SSEEvents(PROVIDER)
                end: dict[str, Any] | None = None
                async for received in body:
                    for payload in events.feed(received):
                        kind, value = _read_event(payload)
                        if kind == "delta" and value:
                            yield ChatChunk(delta=value)
                        elif kind == "end":
                            end = value
                            break
                    if end is not None:
                        break
                if end is None:
                    log.warning("cohere stream: the body ended before message-end")
                    raise UpstreamUnavailable(provider=PROVIDER)
                # Read the end of the chunked body so the connection goes back to the pool.
                with contextlib.suppress(TimeoutError, httpx.HTTPError):
                    async with asyncio.timeout(DRAIN_SECONDS):
                        async for _ in body:
                            pass
                yield _final_chunk(end)
            except SDK_ERRORS as exc:
                raise translate_error(exc) from exc

    async def _open_stream(self, stack: contextlib.AsyncExitStack, request: ChatRequest) -> httpx.Response:
        """Send the request; retry 429, 5xx and refused connections before any of the body is read."""
        check_options(request, self.name, SUPPORTED_OPTIONS)  # tools and formats: not mapped to Cohere's yet
        messages = [_message(m) for m in request.messages]
        options = request.options
        for attempt in range(self._max_retries + 1):
            try:
                raw = await stack.enter_async_context(
                    self._client.with_raw_response.chat_stream(
                        model=self._model,
                        messages=messages,
                        max_tokens=request.max_tokens if request.max_tokens is not None else OMIT,
                        temperature=request.temperature if request.temperature is not None else OMIT,
                        stop_sequences=list(options.stop) if options.stop else OMIT,
                        seed=options.seed if options.seed is not None else OMIT,
                    )
                )
                return raw.response
            except ApiError as exc:
                wait = _retry_wait(exc, attempt) if attempt < self._max_retries else None
                if wait is None:
                    raise
            except httpx.ConnectError:
                if attempt >= self._max_retries:
                    raise
                wait = _backoff(attempt)
            log.info("cohere chat: retrying in %.2f s (retry %d of %d)", wait, attempt + 1, self._max_retries)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _retry_wait(exc: ApiError, attempt: int) -> float | None:
    status = exc.status_code or 0
    if status != 429 and status < 500:
        return None
    after = retry_after(exc.headers or {})
    if after is None:
        return _backoff(attempt)
    return after if after <= MAX_RETRY_WAIT else None


def _backoff(attempt: int) -> float:
    return min(0.5 * 2.0**attempt, MAX_RETRY_WAIT) * random.uniform(0.75, 1.0)  # noqa: S311 - jitter, not crypto


def _message(message: ChatMessage) -> cohere.ChatMessageV2:
    if message.role == "system":
        return cohere.SystemChatMessageV2(content=message.content)
    if message.role == "assistant":
        return cohere.AssistantChatMessageV2(content=message.content)
    return cohere.UserChatMessageV2(content=message.content)


def _read_event(payload: bytes) -> tuple[str, Any]:
    """One stream event -> ("delta", text) | ("end", message-end delta) | ("other", None)."""
    if payload == b"[DONE]":  # not sent by Cohere today; the SDK accepts it, so do we (it ends nothing)
        return "other", None
    try:
        event = json.loads(payload)
        kind = event.get("type")
        if kind == "content-delta":
            text = event["delta"]["message"]["content"]["text"]
            if not isinstance(text, str):
                raise TypeError("content-delta text is not a string")
            return "delta", text
        if kind == "message-end":
            end = event.get("delta") or {}
            if not isinstance(end, dict):
                raise TypeError("message-end delta is not an object")
            return "end", end
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("cohere stream: unreadable event: %.200r", payload)
        raise UpstreamBadResponse(provider=PROVIDER) from exc
    return "other", None  # message-start, content-start/end, tool and citation events


def _final_chunk(end: dict[str, Any]) -> ChatChunk:
    reason = end.get("finish_reason")
    if reason == "ERROR":
        log.warning("cohere stream: finished with ERROR: %.300r", end)
        raise UpstreamUnavailable(provider=PROVIDER)
    if reason == "TIMEOUT":
        log.warning("cohere stream: finished with TIMEOUT")
        raise UpstreamTimeout(provider=PROVIDER)
    usage = end.get("usage")
    counts = (usage.get("tokens") or usage.get("billed_units")) if isinstance(usage, dict) else None
    if not isinstance(counts, dict):
        counts = {}
    return ChatChunk(
        finish_reason=_FINISH_REASONS.get(reason, reason.lower()) if isinstance(reason, str) else None,
        prompt_tokens=_count(counts.get("input_tokens")),
        completion_tokens=_count(counts.get("output_tokens")),
    )


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def translate_error(exc: Exception) -> UpstreamError:
    """The chatbot error for an SDK or transport exception. Details go to the log, never to the message."""
    if isinstance(exc, ParsingError):
        log.warning("cohere: response did not match the schema: %.300s", exc)
        return UpstreamBadResponse(provider=PROVIDER)
    if isinstance(exc, ApiError):
        log.warning("cohere: HTTP %s: %.300r", exc.status_code, exc.body)
        return error_for_status(PROVIDER, exc.status_code or 0, exc.headers or {})
    if isinstance(exc, httpx.TimeoutException):
        log.warning("cohere: timed out: %r", exc)
        return UpstreamTimeout(provider=PROVIDER)
    if isinstance(exc, httpx.TransportError):
        log.warning("cohere: connection failed: %r", exc)
        return UpstreamUnavailable(provider=PROVIDER)
    log.warning("cohere: unreadable response: %r", exc)
    return UpstreamBadResponse(provider=PROVIDER)
