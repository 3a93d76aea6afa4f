"""build_services(settings): one place that builds every client once and closes each on exit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from chatbot.chat.answers import AnswerManager
from chatbot.chat.feedback import FeedbackRecorder, FeedbackService
from chatbot.chat.quotas import Quotas
from chatbot.chat.service import ChatService
from chatbot.ingest.jobs import JobRunner, LocalJobs
from chatbot.ingest.parsing import parser_pool
from chatbot.ingest.reindex import Reindexer
from chatbot.ingest.service import Ingestor
from chatbot.ops.looplag import LoopLagMonitor
from chatbot.ops.observability import Metrics, upstream_provider_label
from chatbot.ops.tracing import tracing_from_env
from chatbot.providers.base import ChatModel, Embedder, Reranker, SparseEmbedder
from chatbot.providers.registry import Providers, build_providers, choose_embedder
from chatbot.rag.pipeline import Pipeline
from chatbot.rag.prompts import Prompts
from chatbot.settings import Settings
from chatbot.stores.base import ConversationStore, Counters, EventLog, VectorStore
from chatbot.stores.factory import open_stores, vector_store
from chatbot.stores.memory import MemoryCounters
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
    jobs: JobRunner  # ingestion jobs: in-process tasks, or saq workers over Redis (jobs.backend)
    connections: set[Any] = field(default_factory=set)  # open websocket connections (api.ws.Connection)
    looplag: LoopLagMonitor = field(default_factory=LoopLagMonitor)  # sampling the serving loop's lag
    counters: Counters = field(default_factory=MemoryCounters)  # rate limits, budgets (Redis: all instances)
    quotas: Quotas | None = None  # the limits of settings.quotas, counted in `counters`
    redis: RedisConnection | None = None  # the one Redis client when settings.redis.url is set (/readyz)
    metrics: Metrics = field(default_factory=Metrics)  # this process's Prometheus series (GET /metrics)
    feedback: FeedbackService | None = None  # ratings of answers (POST /v1/messages/<id>/feedback, export)
    reindexer: Reindexer | None = None  # re-embeds the collection with another embedder (a reindex job)


@asynccontextmanager
async def build_services(
    settings: Settings, *, providers: Providers | None = None, store: VectorStore | None = None
) -> AsyncIterator[Services]:
    """Build (or adopt) every dependency. Providers and a store passed in are used as they are and left
    open: their owner closes them (tests share one loaded model and one store across many apps)."""
    async with AsyncExitStack() as stack:
        stack.enter_context(
            tracing_from_env(settings.tracing)
        )  # OTEL_* variables; off unless an exporter is set
        if providers is None:
            if store is None:  # opened first: the collection says which embedder it was built with
                opened = vector_store(settings.qdrant)
                await opened.open()
                stack.push_async_callback(opened.aclose)
                store = opened
            recorded = await store.recorded_model()
            embedder = choose_embedder(settings, recorded, settings.qdrant.collection)
            providers = build_providers(settings, stack, embedder=embedder)
        warm_up = getattr(providers.embedder, "warm_up", None)
        if warm_up is not None:
            await warm_up()  # loads the offline model in its worker thread, not per request
        stores = await open_stores(
            settings,
            stack,
            dense_model=providers.embedder.name,
            dimensions=providers.embedder.dimensions,
            sparse=providers.sparse is not None,
            vectors=store,
        )
        store, event_log, conversations = stores.vectors, stores.event_log, stores.conversations
        counters, cache, redis = stores.counters, stores.cache, stores.redis  # redis: instances share them
        prompts = Prompts(settings.prompts_dir)
        looplag = LoopLagMonitor(threshold=settings.server.looplag_threshold_ms / 1000)
        await looplag.start()
        stack.push_async_callback(looplag.stop)
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
        quotas = Quotas(
            counters,
            settings.quotas,
            slot_ttl=settings.deadlines.answer + settings.stream.grace_seconds + 60,
        )
        answers.observers.append(quotas.observe)
        stack.push_async_callback(quotas.aclose)
        chat_service = ChatService(answers, conversations, settings, quotas)
        recorder = FeedbackRecorder(stores.feedback, max_answer_chars=settings.feedback.max_answer_chars)
        answers.observers.append(recorder.observe)
        stack.push_async_callback(recorder.aclose)
        feedback = FeedbackService(
            stores.feedback,
            recorder,
            max_comment_chars=settings.feedback.max_comment_chars,
            observers=[metrics.observe_feedback],
        )
        ingestor = Ingestor(
            embedder=providers.embedder,
            sparse=providers.sparse,
            store=store,
            batch_size=settings.local.batch_size,
            max_bytes=settings.limits.max_upload_bytes,
            cache=cache,
            parser=parser_pool(settings.parsing),
        )
        switchable: list[Services] = []  # the services, once built: a reindex switches their embedder

        def use_embedder(embedder: Embedder) -> None:
            ingestor.embedder = pipeline.retriever.embedder = embedder
            for built in switchable:
                built.embedder = embedder

        reindexer = Reindexer(settings, store, stack, use_embedder)
        jobs = await open_job_runner(settings, ingestor, reindexer)
        stack.push_async_callback(jobs.aclose)
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
            jobs=jobs,
            looplag=looplag,
            counters=counters,
            quotas=quotas,
            redis=redis.connection if redis is not None else None,
            connections=connections,
            metrics=metrics,
            feedback=feedback,
            reindexer=reindexer,
        )
        switchable.append(services)
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


async def open_job_runner(
    settings: Settings, ingestor: Ingestor, reindexer: Reindexer | None = None
) -> JobRunner:
    """In-process jobs, or (jobs.backend = redis, with CHATBOT_REDIS__URL) jobs queued for `worker` processes."""
    if settings.jobs.backend == "redis":
        from chatbot.ingest.jobs_redis import RedisJobs

        return await RedisJobs.open(settings)
    return LocalJobs(ingestor, settings, reindexer)
