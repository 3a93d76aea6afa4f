"""open_redis_backends(settings, stack): every Redis implementation, on one client, closed by the stack."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from chatbot.settings import Settings
from chatbot.stores.redis.bus import RedisBus
from chatbot.stores.redis.client import RedisConnection
from chatbot.stores.redis.conversations import RedisConversationStore
from chatbot.stores.redis.counters import RedisCounters
from chatbot.stores.redis.eventlog import RedisEventLog


@dataclass(frozen=True, slots=True)
class RedisBackends:
    connection: RedisConnection
    event_log: RedisEventLog
    bus: RedisBus
    conversations: RedisConversationStore
    counters: RedisCounters


async def open_redis_backends(settings: Settings, stack: AsyncExitStack) -> RedisBackends:
    """Connect (failing fast with RedisUnavailable if Redis does not answer) and subscribe to stop signals.
    On exit: the event log stores what it still holds, the bus unsubscribes, then the client closes."""
    conn = RedisConnection(settings.redis)
    stack.push_async_callback(conn.aclose)
    bus = RedisBus(conn)
    await bus.open()
    stack.push_async_callback(bus.aclose)
    event_log = RedisEventLog(
        conn,
        max_events=settings.stream.log_max_events,
        expire_seconds=settings.stream.grace_seconds,
        lease_seconds=settings.redis.lease_seconds,
    )
    stack.push_async_callback(event_log.aclose)
    conversations = RedisConversationStore(
        conn,
        max_turns=settings.limits.max_history_messages,
        ttl_seconds=settings.redis.conversation_ttl_seconds,
    )
    return RedisBackends(conn, event_log, bus, conversations, RedisCounters(conn))
