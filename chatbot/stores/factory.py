"""open_stores(settings, stack): every store the app needs, built from settings in one place.

- vectors        QdrantStore for a server; for a local path EdgeStore (Qdrant Edge in process), or with
                 settings.qdrant.engine "qdrant-local" QdrantStore in local mode, wrapped in MirroredStore
                 when settings.qdrant.memory_index is on
- event_log, conversations, counters
                 in memory (one process), or on Redis when settings.redis.url is set (instances share them)
- feedback       answered turns and their ratings: in memory (bounded), or on Redis when it is set
- cache          the answer cache (a second Qdrant collection) when settings.cache.enabled
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from chatbot.errors import ConfigError
from chatbot.settings import QdrantSettings, Settings
from chatbot.stores.base import (
    AnswerCache,
    ConversationStore,
    Counters,
    EventLog,
    FeedbackStore,
    VectorStore,
)
from chatbot.stores.edge.answer_cache import EdgeAnswerCache
from chatbot.stores.edge.store import EdgeStore
from chatbot.stores.memory import (
    MemoryConversationStore,
    MemoryCounters,
    MemoryEventLog,
    MemoryFeedbackStore,
)
from chatbot.stores.qdrant.answer_cache import QdrantAnswerCache
from chatbot.stores.qdrant.mirror import MirroredStore
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.stores.redis.backends import RedisBackends, open_redis_backends
from chatbot.stores.redis.client import RedisConnection
from chatbot.stores.redis.feedback import RedisFeedbackStore


def vector_store(settings: QdrantSettings) -> QdrantStore | MirroredStore | EdgeStore:
    """The configured vector store, not opened yet (`await store.open()`): a server through AsyncQdrantClient;
    a local path through Qdrant Edge, or qdrant-client's local mode (with the numpy mirror) when
    settings.engine picks it."""
    if settings.is_local and settings.engine == "edge":
        return EdgeStore(settings)
    store = QdrantStore(settings)
    return MirroredStore(store) if settings.is_local and settings.memory_index else store


@dataclass(frozen=True, slots=True)
class Stores:
    vectors: VectorStore
    event_log: EventLog
    conversations: ConversationStore
    counters: Counters
    feedback: FeedbackStore
    cache: AnswerCache | None = None
    redis: RedisBackends | None = None  # its bus carries stop signals, its connection answers /readyz


async def open_stores(
    settings: Settings,
    stack: AsyncExitStack,
    *,
    dense_model: str,
    dimensions: int,
    sparse: bool,
    vectors: VectorStore | None = None,
) -> Stores:
    """Open every store and register its close on `stack`. The collection is created for the embedding model
    (`dense_model`, `dimensions`; BM25 vectors when `sparse`) or checked against it. A vector store passed
    in is used as it is and left open: its owner closes it (tests share one store across many apps)."""
    if vectors is None:
        opened = vector_store(settings.qdrant)
        await opened.open()
        stack.push_async_callback(opened.aclose)
        vectors = opened
    await vectors.ensure_collection(dense_model, dimensions, sparse=sparse)
    redis = await open_redis_backends(settings, stack) if settings.redis.url else None
    event_log: EventLog
    conversations: ConversationStore
    counters: Counters
    if redis is not None:
        event_log, conversations, counters = redis.event_log, redis.conversations, redis.counters
    else:
        memory_log = MemoryEventLog(
            max_events=settings.stream.log_max_events, expire_seconds=settings.stream.grace_seconds
        )
        stack.push_async_callback(memory_log.aclose)
        event_log = memory_log
        conversations = MemoryConversationStore(
            max_conversations=settings.limits.max_conversations,
            max_turns=settings.limits.max_history_messages,
        )
        counters = MemoryCounters()
    cache: QdrantAnswerCache | EdgeAnswerCache | None = None
    if settings.cache.enabled:
        similarity, ttl = settings.cache.similarity, settings.cache.ttl_seconds
        if isinstance(vectors, EdgeStore):
            cache = EdgeAnswerCache(vectors, similarity=similarity, ttl_seconds=ttl)
        elif isinstance(vectors, QdrantStore | MirroredStore):
            cache = QdrantAnswerCache(vectors.qdrant, similarity=similarity, ttl_seconds=ttl)
        else:
            raise ConfigError("The answer cache needs the Qdrant vector store.")
        await cache.open(dimensions)
    return Stores(vectors, event_log, conversations, counters, feedback_store(settings, redis), cache, redis)


def feedback_store(settings: Settings, redis: RedisBackends | None) -> FeedbackStore:
    """Ratings on Redis when it is set (every instance, and `feedback export`, sees them), else in memory."""
    if redis is not None:
        return RedisFeedbackStore(redis.connection, ttl_seconds=settings.feedback.ttl_seconds)
    return MemoryFeedbackStore(max_answers=settings.feedback.max_answers)


async def open_feedback_store(settings: Settings, stack: AsyncExitStack) -> FeedbackStore:
    """The feedback store alone, for `python -m chatbot feedback export` (Redis: what every instance kept)."""
    if not settings.redis.url:
        return MemoryFeedbackStore(max_answers=settings.feedback.max_answers)
    conn = RedisConnection(settings.redis)
    stack.push_async_callback(conn.aclose)
    return RedisFeedbackStore(conn, ttl_seconds=settings.feedback.ttl_seconds)
