"""The process's one Redis client, its key names, and the error a client sees when Redis is down."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from urllib.parse import quote

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from chatbot.errors import UpstreamError
from chatbot.settings import RedisSettings

log = logging.getLogger(__name__)

CLIENT_NAME = "chatbot"


class RedisUnavailable(UpstreamError):
    code = "redis_unavailable"
    status = 503
    default_message = "The shared state store is unavailable; retry shortly."


@contextlib.contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Turn a Redis failure into RedisUnavailable (the dependency's text goes to the log, not the client)."""
    try:
        yield
    except RedisError as exc:
        log.warning("redis: %s failed: %s: %s", what, type(exc).__name__, exc)
        raise RedisUnavailable(provider="redis") from exc


def key_part(value: str) -> str:
    """An id inside a key, %-quoted: ':' '{' '}' in a client-supplied id cannot forge another key."""
    return quote(value, safe="")


class RedisConnection:
    """One redis.asyncio client (one connection pool) per process, built from settings, closed on exit."""

    def __init__(self, settings: RedisSettings) -> None:
        if not settings.url:
            raise ValueError("RedisConnection needs settings.redis.url")
        self.settings = settings
        self.prefix = settings.key_prefix
        self.client: Redis = Redis.from_url(
            settings.url,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), settings.max_retries),
            client_name=CLIENT_NAME,
            decode_responses=False,
            protocol=2,  # the reply shapes this package parses
        )
        self.closed = False

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def ping(self) -> bool:
        """For /readyz: True when Redis answers within the timeout."""
        try:
            return bool(await self.client.ping())
        except RedisError as exc:
            log.warning("redis: ping failed: %s: %s", type(exc).__name__, exc)
            return False

    async def aclose(self) -> None:
        self.closed = True
        await self.client.aclose(close_connection_pool=True)
