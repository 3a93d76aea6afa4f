"""RedisBus: the AnswerBus Protocol across instances.

Stop signals go over one pub/sub channel: every instance subscribes (open(), before it serves) and cancels
the answers it runs; the others ignore the id. Pub/sub is at most once: a stop published while an instance
is reconnecting to Redis is lost there (the client may stop again; the answer still ends by its deadline or
grace window). Reader presence is a key with a PX ttl that readers on other instances keep touching.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from chatbot.stores.redis.client import RedisConnection, key_part, redis_errors

log = logging.getLogger(__name__)


class RedisBus:
    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn
        self._redis = conn.client
        self.channel = conn.key("stop")
        self._pubsub: PubSub | None = None

    def _reader_key(self, message_id: str) -> str:
        return self._conn.key("answer", "{" + key_part(message_id) + "}", "reader")

    async def open(self) -> None:
        """Subscribe now, so that a stop published once this instance serves is never missed."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            with redis_errors("subscribe"):
                await pubsub.subscribe(self.channel)
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # annotated only in newer redis-py
            raise
        self._pubsub = pubsub

    async def publish_stop(self, message_id: str, reason: str) -> None:
        payload = json.dumps({"message_id": message_id, "reason": reason})
        with redis_errors("publish stop"):
            await self._redis.publish(self.channel, payload)

    async def listen(self, on_stop: Callable[[str, str], object]) -> None:
        """Until cancelled: on_stop(message_id, reason) for every stop published by any instance."""
        if self._pubsub is None:
            await self.open()
        pubsub = self._pubsub
        if pubsub is None:
            raise RuntimeError("the bus is closed")
        backoff = 0.05
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except RedisError as exc:  # the next call reconnects and subscribes again
                log.warning("redis: stop channel failed (%s: %s); reconnecting", type(exc).__name__, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            if message is None or message.get("type") != "message":
                continue
            try:
                body = json.loads(message["data"])
                message_id, reason = str(body["message_id"]), str(body["reason"])
            except (ValueError, KeyError, TypeError):
                log.warning("redis: ignoring a malformed stop signal")
                continue
            on_stop(message_id, reason)

    async def touch_reader(self, message_id: str, ttl: float) -> None:
        with redis_errors("touch reader"):
            await self._redis.set(self._reader_key(message_id), b"1", px=max(1, int(ttl * 1000)))

    async def has_reader(self, message_id: str) -> bool:
        with redis_errors("has reader"):
            return bool(await self._redis.exists(self._reader_key(message_id)))

    async def aclose(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # annotated only in newer redis-py
            self._pubsub = None
