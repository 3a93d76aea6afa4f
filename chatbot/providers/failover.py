"""Failover between providers, with a circuit breaker per provider.

A provider that fails *before its first token* (429, 5xx, timeout, connection refused) hands the answer to
the next one; after the first token a failure is the answer's error (no retry once the client saw text).
A provider that keeps failing is skipped for a cool-down, then tried again (half-open).

Embeddings fail over only within one vector space: every embedder in a FailoverEmbedder must have the same
`name` and `dimensions`, or construction fails. Mixing spaces would corrupt retrieval silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from chatbot.errors import (
    ConfigError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from chatbot.providers.base import ChatChunk, ChatModel, ChatRequest, Embedder, EmbedKind

log = logging.getLogger(__name__)

RETRYABLE = (UpstreamRateLimited, UpstreamUnavailable, UpstreamTimeout)


@dataclass(slots=True)
class CircuitBreaker:
    """Open after `threshold` consecutive failures; closed again after a success. While open, the provider
    is skipped until `cooldown` seconds passed (then one trial: half-open)."""

    threshold: int = 3
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None

    def available(self, now: float | None = None) -> bool:
        if self.opened_at is None:
            return True
        return (now if now is not None else time.monotonic()) - self.opened_at >= self.cooldown

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None


class FailoverChatModel:
    """Answers with the first available model; fails over before the first token only."""

    def __init__(self, models: Sequence[ChatModel], *, threshold: int = 3, cooldown: float = 30.0) -> None:
        if len(models) < 2:
            raise ConfigError("failover needs at least two chat models")
        self.models = list(models)
        self.breakers = {m.name: CircuitBreaker(threshold, cooldown) for m in self.models}
        self.name = "+".join(m.name for m in self.models)
        self.max_context_tokens = min(m.max_context_tokens for m in self.models)

    def _order(self) -> list[ChatModel]:
        """Available models first (in configured order); open circuits last, as a final resort."""
        now = time.monotonic()
        ready = [m for m in self.models if self.breakers[m.name].available(now)]
        return ready + [m for m in self.models if m not in ready]

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        last_error: UpstreamError | None = None  # set by every skipped model; the loop always runs once
        for model in self._order():
            breaker = self.breakers[model.name]
            stream = model.stream_reply(request)
            try:
                try:
                    first = await anext(stream)
                except StopAsyncIteration:
                    breaker.record_success()
                    return
                except RETRYABLE as exc:
                    breaker.record_failure()
                    last_error = exc
                    log.warning(
                        "chat model %s failed before its first token (%s); failing over", model.name, exc.code
                    )
                    continue
                breaker.record_success()
                yield _named(first, model.name)
                async for chunk in stream:
                    yield _named(chunk, model.name)
                return
            finally:
                await stream.aclose()  # type: ignore[attr-defined]  # async generators
        raise last_error or UpstreamUnavailable()


def _named(chunk: ChatChunk, model: str) -> ChatChunk:
    return ChatChunk(chunk.delta, chunk.finish_reason, chunk.prompt_tokens, chunk.completion_tokens, model)


class FailoverEmbedder:
    """Embeds with the first embedder that answers; all of them must produce the same vector space."""

    def __init__(self, embedders: Sequence[Embedder], *, threshold: int = 3, cooldown: float = 30.0) -> None:
        spaces = {(e.name, e.dimensions) for e in embedders}
        if len(embedders) < 2 or len(spaces) != 1:
            raise ConfigError(
                "embedding failover needs two or more embedders of one vector space "
                f"(same model and dimensions); got {sorted(spaces)}"
            )
        self.embedders = list(embedders)
        self.breakers = [CircuitBreaker(threshold, cooldown) for _ in self.embedders]
        self.name = self.embedders[0].name
        self.dimensions = self.embedders[0].dimensions
        self.distance = self.embedders[0].distance

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        now = time.monotonic()
        order = sorted(range(len(self.embedders)), key=lambda i: not self.breakers[i].available(now))
        last_error: UpstreamError | None = None  # set by every skipped model; the loop always runs once
        for i in order:
            try:
                vectors = await self.embedders[i].embed(texts, kind)
            except RETRYABLE as exc:
                self.breakers[i].record_failure()
                last_error = exc
                log.warning("embedder #%d failed (%s); failing over", i, exc.code)
                continue
            self.breakers[i].record_success()
            return vectors
        raise last_error or UpstreamUnavailable()
