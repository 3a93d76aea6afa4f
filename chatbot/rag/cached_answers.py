"""The pipeline's use of the shared answer cache: which requests may use it, their key, the lookup, the replay
of a hit as events, and the store of a finished answer. The cache itself is stores.base.AnswerCache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence

from chatbot.errors import ChatbotError
from chatbot.events import ChatEvent, Source, SourcesEvent, TokenEvent
from chatbot.providers.base import ChatMessage
from chatbot.rag.answer_request import AnswerRequest
from chatbot.rag.retriever import as_chunks, as_sources, staged
from chatbot.stores.base import AnswerCache, QueryVectors
from chatbot.stores.records import CachedAnswer

log = logging.getLogger(__name__)

# AnswerRequest fields that do not change the answer's text: every other field (temperature, max_tokens, and
# any generation parameter added later) is part of the cache key, so a new one splits the cache, never
# poisons it. A history, tool options or a tool continuation make a request uncacheable (cacheable below).
_NOT_GENERATION = frozenset(
    {
        "tenant",
        "question",
        "message_id",
        "conversation_id",
        "history",
        "untrusted",
        "options",
        "continuation",
        "where",
    }
)


def generation_params(req: AnswerRequest) -> dict[str, object]:
    """The request's parameters that change the answer (None: the default)."""
    return {f.name: getattr(req, f.name) for f in dataclasses.fields(req) if f.name not in _NOT_GENERATION}


def cache_variant(req: AnswerRequest, *, model: str, prompts_version: str) -> str:
    """The answer cache's key besides tenant, generation and question: the model, the prompt templates'
    version and every generation parameter of the request."""
    key = {"model": model, "prompts": prompts_version, "params": generation_params(req)}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()[:32]


def cacheable(req: AnswerRequest, history: Sequence[ChatMessage], vectors: QueryVectors) -> bool:
    """Whether the request's answer may come from, and go to, the cache (given a cache)."""
    return (
        not history
        and vectors.dense is not None
        and req.options.plain  # a cached text answer would ignore tools, stop, a format, a seed
        and not req.continuation
        and req.where is None  # a filtered answer is for that filter only
    )


def shareable(req: AnswerRequest) -> bool:
    """Whether the answer may be served to the tenant's other callers."""
    # a visitor's answer at temperature 2 is for that visitor only: never served to the tenant's others
    return not (req.untrusted and any(v is not None for v in generation_params(req).values()))


async def lookup(
    cache: AnswerCache,
    req: AnswerRequest,
    generation: str,
    variant: str,
    vectors: QueryVectors,
    timings: dict[str, float],
    *,
    deadline: float,
) -> CachedAnswer | None:
    assert vectors.dense is not None  # noqa: S101 - checked by cacheable()
    return await staged(
        "cache", deadline, cache.lookup(req.tenant, generation, variant, vectors.dense), timings
    )


async def stream_replay(hit: CachedAnswer, parts: list[str]) -> AsyncIterator[ChatEvent]:
    """A cached answer's sources and tokens, streamed like any other (the caller sends the done event)."""
    yield SourcesEvent(sources=tuple(as_sources(hit.sources)))
    for piece in re.findall(r"\S+\s*|\s+", hit.answer):
        parts.append(piece)
        yield TokenEvent(delta=piece)


async def store(
    cache: AnswerCache,
    req: AnswerRequest,
    generation: str,
    variant: str,
    vectors: QueryVectors,
    *,
    answer: str,
    sources: Sequence[Source],
    model: str,
) -> None:
    """Stores a finished answer; a failure is logged, never raised (the client already has its answer)."""
    try:
        await cache.store_answer(
            req.tenant,
            generation,
            variant,
            vectors.dense or (),
            question=req.question,
            answer=answer,
            sources=as_chunks(sources),
            model=model,
        )
    except ChatbotError:
        log.warning("could not store answer %s in the cache", req.message_id)
