"""build_services(settings): one place that builds every client once and closes each on exit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from chatbot.chat.answers import AnswerManager
from chatbot.chat.quotas import Quotas
from chatbot.chat.service import ChatService
from chatbot.ingest.service import Ingestor
from chatbot.ops.looplag import LoopLagMonitor
from chatbot.ops.observability import Metrics, upstream_provider_label
from chatbot.providers.base import ChatModel, Embedder, Reranker, SparseEmbedder
from chatbot.providers.registry import Providers, build_providers
from chatbot.rag.pipeline import Pipeline
from chatbot.rag.prompts import Prompts
from chatbot.settings import Settings
from chatbot.stores.conversations import ConversationStore, MemoryConversationStore
from chatbot.stores.counters import Counters, MemoryCounters
from chatbot.stores.eventlog import EventLog, MemoryEventLog
from chatbot.stores.qdrant.answer_cache import AnswerCache
from chatbot.stores.qdrant.store import VectorStore
from chatbot.stores.redis.backends import open_redis_backends
from chatbot.stores.redis.client import RedisConnection

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Services:
    settings: Settings
    store: VectorStore
    embedder: Embedder
    sparse: SparseEmbedder | None
    chat: ChatModel
    reranker: Reranker | None
    prompts: Prompts
    conversations: ConversationStore
    event_log: EventLog
    pipeline: Pipeline
    answers: AnswerManager
    chat_service: ChatService  # start / follow / stop / collect answers: what every transport calls
    ingestor: Ingestor
    connections: set[Any] = field(default_factory=set)  # open websocket connections (api.ws.Connection)
    looplag: LoopLagMonitor = field(default_factory=LoopLagMonitor)  # sampling the serving loop's lag
    counters: Counters = field(default_factory=MemoryCounters)  # rate limits, budgets (Redis: all instances)
    quotas: Quotas | None = None  # the limits of settings.quotas, counted in `counters`
    redis: RedisConnection | None = None  # the one Redis client when settings.redis.url is set (/readyz)
    metrics: Metrics = field(default_factory=Metrics)  # this process's Prometheus series (GET /metrics)


@asynccontextmanager
async def build_services(
    settings: Settings, *, providers: Providers | None = None, store: VectorStore | None = None
) -> AsyncIterator[Services]:
    """Build (or adopt) every dependency. Providers and a store passed in are used as they are and left
    open: their owner closes them (tests share one loaded model and one store across many apps)."""
    async with AsyncExitStack() as stack:
        if providers is None:
            providers = build_providers(settings, stack)
        warm_up = getattr(providers.embedder, "warm_up", None)
        if warm_up is not None:
            await warm_up()  # loads the offline model in its worker thread, not per request
        if store is None:
            store = VectorStore(settings.qdrant)
            await store.open()
            stack.push_async_callback(store.aclose)
        await store.ensure_collection(
            providers.embedder.name, providers.embedder.dimensions, sparse=providers.sparse is not None
        )
        prompts = Prompts(settings.prompts_dir)
        redis = await open_redis_backends(settings, stack) if settings.redis.url else None
        conversations: ConversationStore
        event_log: EventLog
        if redis is not None:  # instances share answers, stop signals, conversations and counters
            conversations, event_log = redis.conversations, redis.event_log
        else:
            conversations = MemoryConversationStore(
                max_conversations=settings.limits.max_conversations,
                max_turns=settings.limits.max_history_messages,
            )
            event_log = MemoryEventLog(
                max_events=settings.stream.log_max_events, expire_seconds=settings.stream.grace_seconds
            )
            stack.push_async_callback(event_log.aclose)
        looplag = LoopLagMonitor(threshold=settings.server.looplag_threshold_ms / 1000)
        await looplag.start()
        stack.push_async_callback(looplag.stop)
        cache = None
        if settings.cache.enabled:
            cache = AnswerCache(
                store, similarity=settings.cache.similarity, ttl_seconds=settings.cache.ttl_seconds
            )
            await cache.open(providers.embedder.dimensions)
        pipeline = Pipeline(
            cache=cache,
            settings=settings,
            embedder=providers.embedder,
            sparse=providers.sparse,
            chat=providers.chat,
            store=store,
            prompts=prompts,
            conversations=conversations,
            reranker=providers.reranker,
        )
        answers = AnswerManager(
            pipeline,
            event_log,
            settings.stream,
            max_answers=settings.limits.max_answers_per_process,
            bus=redis.bus if redis is not None else None,
        )
        answers.start_listening()
        connections: set[Any] = set()
        metrics = Metrics(
            upstream_provider=upstream_provider_label(settings, reranker=providers.reranker is not None),
            running_answers=lambda: answers.running,
            open_connections=lambda: len(connections),
        )
        answers.observers.append(metrics.observe_answer)
        pipeline.on_cache_lookup = lambda hit: metrics.cache_hit() if hit else metrics.cache_miss()
        looplag.add_listener(metrics.observe_loop_lag)
        stack.callback(metrics.close)
        counters: Counters = redis.counters if redis is not None else MemoryCounters()
        quotas = Quotas(
            counters,
            settings.quotas,
            slot_ttl=settings.deadlines.answer + settings.stream.grace_seconds + 60,
        )
        answers.observers.append(quotas.observe)
        stack.push_async_callback(quotas.aclose)
        chat_service = ChatService(answers, conversations, settings, quotas)
        ingestor = Ingestor(
            embedder=providers.embedder,
            sparse=providers.sparse,
            store=store,
            batch_size=settings.local.batch_size,
            max_bytes=settings.limits.max_upload_bytes,
            cache=cache,
        )
        services = Services(
            settings=settings,
            store=store,
            embedder=providers.embedder,
            sparse=providers.sparse,
            chat=providers.chat,
            reranker=providers.reranker,
            prompts=prompts,
            conversations=conversations,
            event_log=event_log,
            pipeline=pipeline,
            answers=answers,
            chat_service=chat_service,
            ingestor=ingestor,
            looplag=looplag,
            counters=counters,
            quotas=quotas,
            redis=redis.connection if redis is not None else None,
            connections=connections,
            metrics=metrics,
        )
        log.info(
            "services ready: embedder=%s chat=%s store=%s mode=%s",
            providers.embedder.name,
            providers.chat.name,
            "local:" + settings.qdrant.location if settings.qdrant.is_local else "server",
            pipeline.search_mode,
        )
        try:
            yield services
        finally:
            await answers.shutdown(settings.server.shutdown_seconds)
