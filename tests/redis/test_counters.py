"""One contract for MemoryCounters and RedisCounters (real redis-server); Redis counters are shared."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from chatbot.stores.base import Counters
from chatbot.stores.memory import MemoryCounters
from chatbot.stores.redis.counters import RedisCounters
from tests.redis.conftest import ConnectionFactory

pytestmark = pytest.mark.redis

CountersFactory = Callable[[], contextlib.AbstractAsyncContextManager[Counters]]


@pytest.fixture(params=["memory", "redis"])
def make_counters(request: pytest.FixtureRequest, connect: ConnectionFactory) -> CountersFactory:
    @contextlib.asynccontextmanager
    async def open_() -> AsyncIterator[Counters]:
        if request.param == "memory":
            yield MemoryCounters()
            return
        async with connect() as conn:
            yield RedisCounters(conn)

    return open_


class TestHit:
    async def test_limit_hits_pass_then_one_waits(self, make_counters: CountersFactory) -> None:
        """`limit` hits in the window pass; the next gets retry_after within (0, window]."""
        async with make_counters() as counters:
            passed = [await counters.hit("k", 3, 2.0) for _ in range(3)]
            refused = await counters.hit("k", 3, 2.0)
        assert passed == [None, None, None]
        assert refused is not None
        assert 0 < refused <= 2.0

    async def test_the_window_slides(self, make_counters: CountersFactory) -> None:
        """After the oldest hit leaves the window a hit passes again; refused hits do not count."""
        async with make_counters() as counters:
            assert await counters.hit("k", 2, 0.3) is None
            await asyncio.sleep(0.15)
            assert await counters.hit("k", 2, 0.3) is None
            wait = await counters.hit("k", 2, 0.3)
            assert wait is not None
            assert wait <= 0.16
            await asyncio.sleep(wait + 0.02)
            assert await counters.hit("k", 2, 0.3) is None
            assert await counters.hit("k", 2, 0.3) is not None

    async def test_keys_are_independent(self, make_counters: CountersFactory) -> None:
        """One key at its limit does not limit another."""
        async with make_counters() as counters:
            assert await counters.hit("a", 1, 5) is None
            assert await counters.hit("a", 1, 5) is not None
            assert await counters.hit("b", 1, 5) is None

    async def test_nonsense_limits_are_refused(self, make_counters: CountersFactory) -> None:
        """A limit below 1 or a non-positive window is a programming error."""
        async with make_counters() as counters:
            with pytest.raises(ValueError, match="limit"):
                await counters.hit("k", 0, 1)
            with pytest.raises(ValueError, match="positive"):
                await counters.add("k", 1, 0)


class TestAdd:
    async def test_totals_add_up_within_a_window(self, make_counters: CountersFactory) -> None:
        """add returns the running total; add(…, 0, …) reads it."""
        async with make_counters() as counters:
            assert await counters.add("tokens", 120, 3600) == 120
            assert await counters.add("tokens", 30, 3600) == 150
            assert await counters.add("tokens", 0, 3600) == 150
            assert await counters.add("other", 5, 3600) == 5

    async def test_a_new_window_starts_from_zero(self, make_counters: CountersFactory) -> None:
        """Windows are fixed and aligned: once the window turns over, the total restarts."""
        async with make_counters() as counters:
            await counters.add("t", 7, 0.2)
            await asyncio.sleep(0.25)
            assert await counters.add("t", 1, 0.2) == 1


class TestSlots:
    async def test_at_most_limit_slots_and_release_frees_one(self, make_counters: CountersFactory) -> None:
        """acquire succeeds `limit` times, then fails until a slot is released."""
        async with make_counters() as counters:
            assert [await counters.acquire("s", 2, 30) for _ in range(3)] == [True, True, False]
            await counters.release("s")
            assert await counters.acquire("s", 2, 30) is True

    async def test_a_slot_never_released_frees_itself(self, make_counters: CountersFactory) -> None:
        """A holder that crashed leaks nothing: its slot expires after ttl."""
        async with make_counters() as counters:
            assert await counters.acquire("s", 1, 0.2) is True
            assert await counters.acquire("s", 1, 0.2) is False
            await asyncio.sleep(0.25)
            assert await counters.acquire("s", 1, 0.2) is True

    async def test_release_without_a_slot_is_a_no_op(self, make_counters: CountersFactory) -> None:
        """Releasing more than was acquired does not free other holders' slots."""
        async with make_counters() as counters:
            await counters.release("s")
            assert await counters.acquire("s", 1, 30) is True
            await counters.release("s")
            await counters.release("s")
            assert await counters.acquire("s", 1, 30) is True
            assert await counters.acquire("s", 1, 30) is False


class TestShared:
    async def test_two_redis_counters_share_every_limit(self, connect: ConnectionFactory) -> None:
        """Two instances (two clients) count against the same limits, totals and slots."""
        async with connect() as conn_a, connect() as conn_b:
            a, b = RedisCounters(conn_a), RedisCounters(conn_b)
            hits = [
                await a.hit("k", 3, 5),
                await b.hit("k", 3, 5),
                await a.hit("k", 3, 5),
                await b.hit("k", 3, 5),
            ]
            totals = [await a.add("t", 10, 3600), await b.add("t", 5, 3600)]
            slots = [await a.acquire("s", 1, 30), await b.acquire("s", 1, 30)]
            await b.release("s")  # b holds none: a's slot stays taken
            still_taken = await b.acquire("s", 1, 30)
            await a.release("s")
            freed = await b.acquire("s", 1, 30)
        assert hits[:3] == [None, None, None]
        assert hits[3] is not None
        assert totals == [10, 15]
        assert slots == [True, False]
        assert (still_taken, freed) == (False, True)

    async def test_concurrent_hits_never_overshoot(self, connect: ConnectionFactory) -> None:
        """100 hits at once from two clients: exactly `limit` pass (the script is atomic)."""
        async with connect() as conn_a, connect() as conn_b:
            a, b = RedisCounters(conn_a), RedisCounters(conn_b)
            results = await asyncio.gather(*(c.hit("burst", 10, 5) for _ in range(50) for c in (a, b)))
        assert sum(1 for r in results if r is None) == 10

    async def test_keys_live_no_longer_than_their_window(
        self, connect: ConnectionFactory, admin: Redis, prefix: str
    ) -> None:
        """Every counter key carries a TTL, so abandoned keys do not pile up."""
        async with connect() as conn:
            counters = RedisCounters(conn)
            await counters.hit("k", 5, 60)
            await counters.add("t", 1, 86_400)
            await counters.acquire("s", 5, 30)
            ttls = [
                await admin.pttl(f"{prefix}:{kind}:{name}")
                for kind, name in (("rate", "k"), ("total", "t"), ("slots", "s"))
            ]
        assert 59_000 < ttls[0] <= 60_000
        assert 0 < ttls[1] <= 86_400_000
        assert 29_000 < ttls[2] <= 30_000
