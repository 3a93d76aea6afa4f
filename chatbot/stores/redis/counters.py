"""RedisCounters: the Counters of every instance on the same Redis (and key prefix), as atomic Lua scripts
on the Redis server's clock, so instances' clocks do not matter. Semantics: stores.base.Counters."""

from __future__ import annotations

import uuid

from chatbot.stores.base import check_limit
from chatbot.stores.redis.client import RedisConnection, key_part, redis_errors

# Times are microseconds of the Redis server's clock (TIME), exact in Lua's doubles.

# KEYS: zset of hits. ARGV: limit, window_us, member. -> -1 allowed, else microseconds to wait.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return tonumber(oldest[2]) + window - now
"""

# KEYS: hash {start, total}. ARGV: amount, window_us. -> the total of the current window.
_ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
local start = now - (now % window)
local cur = redis.call('HMGET', KEYS[1], 'start', 'total')
local total = 0
if tonumber(cur[1]) == start then total = tonumber(cur[2]) end
total = total + tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'start', string.format('%.0f', start), 'total', total)
redis.call('PEXPIRE', KEYS[1], math.ceil((start + window - now) / 1000))
return total
"""

# KEYS: zset of slot tokens scored by expiry. ARGV: limit, ttl_us, token. -> 1 taken, 0 full.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000))
return 1
"""


class RedisCounters:
    """Shared by every instance on the same Redis (and key prefix)."""

    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn
        redis = conn.client
        self._redis = redis
        self._hit = redis.register_script(_HIT)
        self._add = redis.register_script(_ADD)
        self._acquire = redis.register_script(_ACQUIRE)
        self._held: dict[str, list[str]] = {}

    async def hit(self, key: str, limit: int, window_seconds: float) -> float | None:
        check_limit(limit, window_seconds)
        member = uuid.uuid4().hex
        keys = [self._conn.key("rate", key_part(key))]
        with redis_errors("rate limit"):
            wait = int(await self._hit(keys=keys, args=[limit, _us(window_seconds), member]))
        return None if wait < 0 else wait / 1_000_000

    async def add(self, key: str, amount: int, window_seconds: float) -> int:
        check_limit(1, window_seconds)
        keys = [self._conn.key("total", key_part(key))]
        with redis_errors("budget"):
            return int(await self._add(keys=keys, args=[amount, _us(window_seconds)]))

    async def acquire(self, key: str, limit: int, ttl: float) -> bool:
        check_limit(limit, ttl)
        token = uuid.uuid4().hex
        with redis_errors("acquire slot"):
            taken = int(await self._acquire(keys=[self._slots_key(key)], args=[limit, _us(ttl), token]))
        if taken:
            self._held.setdefault(key, []).append(token)
        return bool(taken)

    async def release(self, key: str) -> None:
        held = self._held.get(key)
        if not held:
            return
        token = held.pop()
        if not held:
            del self._held[key]
        with redis_errors("release slot"):
            await self._redis.zrem(self._slots_key(key), token)

    def _slots_key(self, key: str) -> str:
        return self._conn.key("slots", key_part(key))


def _us(seconds: float) -> int:
    return max(1, round(seconds * 1_000_000))
