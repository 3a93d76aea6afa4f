"""Counters for rate limits, budgets and concurrency slots: in process (MemoryCounters) or shared by every
instance (RedisCounters, atomic Lua scripts on the Redis server's clock, so instances' clocks do not matter).

- hit():     a sliding window log: at most `limit` hits in any `window_seconds`. Refused hits are not
             counted. Memory is O(limit) per key: meant for request rates, not token counts.
- add():     a running total in a fixed window aligned to the epoch (a 86400 s window resets at 00:00 UTC);
             add(key, 0, window) reads it. For token budgets.
- acquire(): one of `limit` concurrency slots. Each slot expires `ttl` seconds after it was taken, so a
             crashed instance leaks nothing; choose ttl longer than the longest hold (an answer's deadline).
             release() gives back a slot this instance took under that key.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from typing import Protocol

from chatbot.stores.redis.client import RedisConnection, key_part, redis_errors


class Counters(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: float) -> float | None:
        """Count a hit. None if it is within the limit, else seconds until a hit would be allowed."""
        ...

    async def add(self, key: str, amount: int, window_seconds: float) -> int:
        """Add `amount` to the total of the current window; returns the new total."""
        ...

    async def acquire(self, key: str, limit: int, ttl: float) -> bool:
        """Take a slot if fewer than `limit` are held; it frees itself after `ttl` seconds."""
        ...

    async def release(self, key: str) -> None:
        """Give back one slot this process holds under `key` (nothing if it holds none)."""
        ...


def _check(limit: int, seconds: float) -> None:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if seconds <= 0:
        raise ValueError("a window or ttl must be positive")


class MemoryCounters:
    """One process. Keys whose windows have passed are swept every `sweep_every` operations."""

    def __init__(self, *, sweep_every: int = 4096) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._hit_windows: dict[str, float] = {}
        self._totals: dict[str, tuple[float, int]] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._held: dict[str, list[str]] = {}
        self._ops = 0
        self._sweep_every = sweep_every

    async def hit(self, key: str, limit: int, window_seconds: float) -> float | None:
        _check(limit, window_seconds)
        self._tick()
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        self._hit_windows[key] = window_seconds
        while hits and hits[0] <= now - window_seconds:
            hits.popleft()
        if len(hits) < limit:
            hits.append(now)
            return None
        return hits[-limit] + window_seconds - now

    async def add(self, key: str, amount: int, window_seconds: float) -> int:
        _check(1, window_seconds)
        self._tick()
        now = time.time()
        start = now - now % window_seconds
        was_start, total = self._totals.get(key, (start, 0))
        total = (total if was_start == start else 0) + amount
        self._totals[key] = (start, total)
        return total

    async def acquire(self, key: str, limit: int, ttl: float) -> bool:
        _check(limit, ttl)
        self._tick()
        now = time.monotonic()
        slots = self._slots.setdefault(key, {})
        for token in [t for t, expires in slots.items() if expires <= now]:
            del slots[token]
        if len(slots) >= limit:
            return False
        token = uuid.uuid4().hex
        slots[token] = now + ttl
        self._held.setdefault(key, []).append(token)
        return True

    async def release(self, key: str) -> None:
        held = self._held.get(key)
        if not held:
            return
        token = held.pop()
        if not held:
            del self._held[key]
        slots = self._slots.get(key)
        if slots is not None:
            slots.pop(token, None)

    def _tick(self) -> None:
        self._ops += 1
        if self._ops % self._sweep_every:
            return
        mono, wall = time.monotonic(), time.time()
        stale = [k for k, hits in self._hits.items() if not hits or hits[-1] <= mono - self._hit_windows[k]]
        for key in stale:
            del self._hits[key], self._hit_windows[key]
        for key in [k for k, (start, _t) in self._totals.items() if wall - start > 2 * 86_400 * 366]:
            del self._totals[key]  # totals are tiny; only windows older than any sane budget period go
        for key in [k for k, slots in self._slots.items() if all(exp <= mono for exp in slots.values())]:
            del self._slots[key]


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
        _check(limit, window_seconds)
        member = uuid.uuid4().hex
        keys = [self._conn.key("rate", key_part(key))]
        with redis_errors("rate limit"):
            wait = int(await self._hit(keys=keys, args=[limit, _us(window_seconds), member]))
        return None if wait < 0 else wait / 1_000_000

    async def add(self, key: str, amount: int, window_seconds: float) -> int:
        _check(1, window_seconds)
        keys = [self._conn.key("total", key_part(key))]
        with redis_errors("budget"):
            return int(await self._add(keys=keys, args=[amount, _us(window_seconds)]))

    async def acquire(self, key: str, limit: int, ttl: float) -> bool:
        _check(limit, ttl)
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
