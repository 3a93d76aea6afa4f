"""RedisFeedbackStore: the FeedbackStore Protocol in Redis, so any instance can take a rating and export them.

Per tenant and answer: the answered turn (JSON) and a hash of ratings by user, both expiring `ttl_seconds`
after the last write. A rated answer's id goes into the tenant's sorted set (scored by the answer's time),
and the tenant into the set of tenants with ratings, which export walks. The tenant is part of every key.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from chatbot.errors import UnknownMessage
from chatbot.stores.base import AnsweredTurn, Feedback
from chatbot.stores.redis.client import RedisConnection, key_part, redis_errors

# KEYS: turn, votes, index, tenants. ARGV: user, feedback JSON, ttl, score, tenant
# -> -1 without the turn, 1 when the user's rating was replaced, 0 when new.
_RATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local fresh = redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[5])
if fresh == 1 then return 0 end
return 1
"""
_PAGE = 200


class RedisFeedbackStore:
    def __init__(self, conn: RedisConnection, *, ttl_seconds: int) -> None:
        self._conn = conn
        self._redis = conn.client
        self._ttl = ttl_seconds
        self._rate = self._redis.register_script(_RATE)

    def _keys(self, tenant: str, message_id: str) -> tuple[str, str]:
        tag = "{" + key_part(tenant) + ":" + key_part(message_id) + "}"
        return self._conn.key("fb", tag, "turn"), self._conn.key("fb", tag, "votes")

    def _index(self, tenant: str) -> str:
        return self._conn.key("fb", "rated", key_part(tenant))

    async def record(self, turn: AnsweredTurn) -> None:
        key, _ = self._keys(turn.tenant, turn.message_id)
        with redis_errors("record answered turn"):
            await self._redis.set(key, json.dumps(turn.to_dict()), ex=self._ttl)

    async def turn(self, tenant: str, message_id: str) -> AnsweredTurn | None:
        key, _ = self._keys(tenant, message_id)
        with redis_errors("read answered turn"):
            raw = await self._redis.get(key)
        return AnsweredTurn.from_dict(json.loads(raw)) if raw else None

    async def rate(self, tenant: str, feedback: Feedback) -> bool:
        turn, votes = self._keys(tenant, feedback.message_id)
        args: list[str | int | float] = [
            feedback.user,
            json.dumps(feedback.to_dict()),
            self._ttl,
            time.time(),
            tenant,
            feedback.message_id,
        ]
        with redis_errors("rate answer"):
            result = await self._rate(
                keys=[turn, votes, self._index(tenant), self._conn.key("fb", "tenants")], args=args
            )
        if int(result) < 0:
            raise UnknownMessage()
        return int(result) == 1

    async def rated(self, tenant: str | None = None) -> AsyncIterator[tuple[AnsweredTurn, list[Feedback]]]:
        if tenant is None:
            with redis_errors("list rated tenants"):
                members = await self._redis.smembers(self._conn.key("fb", "tenants"))
            tenants = sorted(_text(m) for m in members)
        else:
            tenants = [tenant]
        for owner in tenants:
            start = 0
            while True:
                with redis_errors("list rated answers"):
                    ids = await self._redis.zrange(self._index(owner), start, start + _PAGE - 1)
                for raw_id in ids:
                    found = await self._read(owner, _text(raw_id))
                    if found is not None:
                        yield found
                if len(ids) < _PAGE:
                    break
                start += _PAGE

    async def _read(self, tenant: str, message_id: str) -> tuple[AnsweredTurn, list[Feedback]] | None:
        turn_key, votes_key = self._keys(tenant, message_id)
        with redis_errors("read rated answer"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(turn_key)
                pipe.hvals(votes_key)
                raw_turn, raw_votes = await pipe.execute()
        if not raw_turn or not raw_votes:
            return None  # expired since it was listed
        votes = sorted((Feedback.from_dict(json.loads(v)) for v in raw_votes), key=lambda f: f.created)
        return AnsweredTurn.from_dict(json.loads(raw_turn)), votes


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
