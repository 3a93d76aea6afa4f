"""The event log contract, run against MemoryEventLog and RedisEventLog (real redis-server), plus what only
the Redis log has: other instances reading, key layout and lifetimes, dead writers, outages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from chatbot.errors import UnknownMessage
from chatbot.events import (
    ChatEvent,
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
    Usage,
)
from chatbot.settings import RedisSettings
from chatbot.stores.base import EventLog
from chatbot.stores.memory import MemoryEventLog
from chatbot.stores.redis.client import RedisConnection, RedisUnavailable
from chatbot.stores.redis.eventlog import RedisEventLog
from tests.redis.conftest import ConnectionFactory, RedisServer
from tests.serving import free_port

pytestmark = pytest.mark.redis

TENANT = "acme"
SOURCE = Source(
    1, "doc-1", "guide/a.md", "Résumé ✓", ("Intro", "Ünïcode"), 3, 'text\n with "quotes"', 0.1 + 0.2
)

LogFactory = Callable[..., contextlib.AbstractAsyncContextManager[EventLog]]


def answer_events(message_id: str, tokens: int) -> list[ChatEvent]:
    return [
        StartEvent(message_id=message_id, conversation_id="c1"),
        SourcesEvent(sources=(SOURCE,)),
        *[TokenEvent(delta=f" t{i} ✓") for i in range(tokens)],
        DoneEvent(usage=Usage(12, tokens), timings={"retrieve": 1.25, "total": 1e-7}, model="m"),
    ]


async def read_all(
    log: EventLog, message_id: str, after: int = 0, tenant: str = TENANT
) -> list[tuple[int, ChatEvent]]:
    async with asyncio.timeout(5):
        return [item async for item in log.read(message_id, tenant, after)]


def redis_log(conn: RedisConnection, *, max_events: int = 4096, expire_seconds: float = 5.0) -> RedisEventLog:
    return RedisEventLog(
        conn, max_events=max_events, expire_seconds=expire_seconds, lease_seconds=conn.settings.lease_seconds
    )


@pytest.fixture(params=["memory", "redis"])
def make_log(request: pytest.FixtureRequest, connect: ConnectionFactory) -> LogFactory:
    """One EventLog of the parametrized kind, closed (and its Redis client with it) afterwards."""

    @contextlib.asynccontextmanager
    async def open_(*, max_events: int = 4096, expire_seconds: float = 5.0) -> AsyncIterator[EventLog]:
        if request.param == "memory":
            memory = MemoryEventLog(max_events=max_events, expire_seconds=expire_seconds)
            try:
                yield memory
            finally:
                await memory.aclose()
            return
        async with connect() as conn:
            log = redis_log(conn, max_events=max_events, expire_seconds=expire_seconds)
            try:
                yield log
            finally:
                await log.aclose()

    return open_


class TestEventLogContract:
    async def test_events_come_back_in_order_with_their_seqs(self, make_log: LogFactory) -> None:
        """append numbers events 1..N; read(after=0) gives all of them in order, ending at the terminal."""
        events = answer_events("m1", 5)
        async with make_log() as log:
            log.create("m1", TENANT)
            seqs = [log.append("m1", e) for e in events]
            got = await read_all(log, "m1")
        assert seqs == list(range(1, len(events) + 1))
        assert got == list(enumerate(events, start=1))

    @pytest.mark.parametrize("after", [0, 1, 4, 7])
    async def test_read_after_a_seq_gives_exactly_the_rest(self, make_log: LogFactory, after: int) -> None:
        """A resume after seq k gets k+1..N, each once."""
        events = answer_events("m1", 6)
        async with make_log() as log:
            log.create("m1", TENANT)
            for e in events:
                log.append("m1", e)
            got = await read_all(log, "m1", after)
        assert got == list(enumerate(events, start=1))[after:]

    async def test_a_live_reader_gets_later_events_and_ends_at_the_terminal(
        self, make_log: LogFactory
    ) -> None:
        """A reader that started before the events waits for them and stops after the terminal."""
        events = answer_events("m1", 8)
        async with make_log() as log:
            log.create("m1", TENANT)
            readers = [asyncio.create_task(read_all(log, "m1")) for _ in range(3)]
            for e in events:
                log.append("m1", e)
                await asyncio.sleep(0.005)
            results = await asyncio.gather(*readers)
        assert all(r == list(enumerate(events, start=1)) for r in results)

    async def test_after_the_terminal_a_read_ends_at_once(self, make_log: LogFactory) -> None:
        """Resuming after the last seq of an ended answer yields nothing and returns."""
        events = answer_events("m1", 2)
        async with make_log() as log:
            log.create("m1", TENANT)
            for e in events:
                log.append("m1", e)
            await read_all(log, "m1")
            assert await read_all(log, "m1", len(events)) == []

    async def test_unknown_id_and_other_tenant_are_unknown(self, make_log: LogFactory) -> None:
        """An id nobody created, or another tenant's answer, raises UnknownMessage on check and read."""
        async with make_log() as log:
            log.create("m1", TENANT)
            log.append("m1", StartEvent(message_id="m1", conversation_id="c1"))
            for mid, tenant in (("nope", TENANT), ("m1", "other")):
                with pytest.raises(UnknownMessage):
                    await log.check(mid, tenant, 0)
                with pytest.raises(UnknownMessage):
                    await read_all(log, mid, 0, tenant)
            assert await log.tenant_of("m1") == TENANT
            assert await log.tenant_of("nope") is None

    async def test_a_seq_beyond_the_last_is_unknown(self, make_log: LogFactory) -> None:
        """after > last seq (or negative) cannot be resumed."""
        async with make_log() as log:
            log.create("m1", TENANT)
            log.append("m1", StartEvent(message_id="m1", conversation_id="c1"))
            for after in (2, -1):
                with pytest.raises(UnknownMessage):
                    await log.check("m1", TENANT, after)

    async def test_an_ended_answer_expires_after_the_grace_window(self, make_log: LogFactory) -> None:
        """expire_seconds after the terminal the answer is unknown (Redis keeps it at least 1 s)."""
        async with make_log(expire_seconds=1.0) as log:
            log.create("m1", TENANT)
            for e in answer_events("m1", 1):
                log.append("m1", e)
            assert len(await read_all(log, "m1")) == 4
            await asyncio.sleep(1.3)
            with pytest.raises(UnknownMessage):
                await log.check("m1", TENANT, 0)

    async def test_events_beyond_the_kept_window_are_unknown(self, make_log: LogFactory) -> None:
        """With max_events kept, resuming before the oldest kept event is refused, not silently gapped."""
        async with make_log(max_events=16) as log:
            log.create("m1", TENANT)
            for i in range(300):
                log.append("m1", TokenEvent(delta=str(i)))
            log.append("m1", StoppedEvent(reason="stop_requested"))
            tail = await read_all(log, "m1", 290)
            with pytest.raises(UnknownMessage):
                await log.check("m1", TENANT, 0)
            with pytest.raises(UnknownMessage):
                await read_all(log, "m1", 0)
        assert [seq for seq, _ in tail] == list(range(291, 302))


class TestRedisEventLog:
    async def test_another_instance_reads_live_exactly_once(self, connect: ConnectionFactory) -> None:
        """Instance B follows A's answer from the middle while A writes it: no gap, no duplicate."""
        events = answer_events("m1", 30)
        async with connect() as conn_a, connect() as conn_b:
            log_a, log_b = redis_log(conn_a), redis_log(conn_b)
            try:
                log_a.create("m1", TENANT)
                for e in events[:5]:
                    log_a.append("m1", e)
                await read_all_until(log_a, "m1", 5)
                assert await log_b.tenant_of("m1") == TENANT
                reader = asyncio.create_task(read_all(log_b, "m1", 3))
                for e in events[5:]:
                    log_a.append("m1", e)
                    await asyncio.sleep(0.003)
                got = await reader
            finally:
                await log_a.aclose()
                await log_b.aclose()
        assert got == list(enumerate(events, start=1))[3:]

    async def test_keys_ids_and_lifetimes(
        self, connect: ConnectionFactory, admin: Redis, prefix: str
    ) -> None:
        """Stream ids are <seq>-1; the meta hash holds tenant/state/last; lease while running, grace after."""
        async with connect(lease_seconds=4.0) as conn:
            log = redis_log(conn, expire_seconds=2.0)
            try:
                log.create("m1", TENANT)
                log.append("m1", StartEvent(message_id="m1", conversation_id="c1"))
                log.append("m1", TokenEvent(delta="hi"))
                await read_all_until(log, "m1", 2)
                stream, meta = f"{prefix}:answer:{{m1}}:events", f"{prefix}:answer:{{m1}}:meta"
                ids = [entry_id for entry_id, _ in await admin.xrange(stream)]
                running = await admin.hgetall(meta)
                lease_ms = await admin.pttl(meta), await admin.pttl(stream)
                log.append("m1", ErrorEvent(code="x", message="y"))
                await read_all(log, "m1", 2)
                done = await admin.hgetall(meta)
                grace_ms = await admin.pttl(meta), await admin.pttl(stream)
            finally:
                await log.aclose()
        assert ids == [b"1-1", b"2-1"]
        assert running == {b"tenant": TENANT.encode(), b"state": b"running", b"last": b"2"}
        assert all(3000 < ms <= 4000 for ms in lease_ms)
        assert done == {b"tenant": TENANT.encode(), b"state": b"done", b"last": b"3"}
        assert all(1000 < ms <= 2000 for ms in grace_ms)

    async def test_a_dead_writer_ends_remote_readers_instead_of_hanging(
        self, connect: ConnectionFactory
    ) -> None:
        """The writer dies mid-answer: its lease lapses and a reader elsewhere gets unknown_message."""
        async with connect(lease_seconds=0.3) as conn_a, connect(lease_seconds=0.3) as conn_b:
            log_a, log_b = redis_log(conn_a), redis_log(conn_b)
            log_a.create("m1", TENANT)
            log_a.append("m1", StartEvent(message_id="m1", conversation_id="c1"))
            await read_all_until(log_a, "m1", 1)
            reader = asyncio.create_task(read_all(log_b, "m1", 0))
            await log_a.aclose()  # the instance is gone: no terminal, no more lease renewals
            started = time.monotonic()
            with pytest.raises(UnknownMessage):
                await reader
            await log_b.aclose()
        assert time.monotonic() - started < 1.5

    async def test_a_retried_batch_stores_each_event_once(
        self, connect: ConnectionFactory, admin: Redis, prefix: str
    ) -> None:
        """If a stored batch is sent again (its reply was lost), the script skips seqs already stored."""
        async with connect() as conn:
            log = redis_log(conn)
            try:
                log.create("m1", TENANT)
                for e in answer_events("m1", 3)[:-1]:
                    log.append("m1", e)
                await read_all_until(log, "m1", 5)
                entry = log._local["m1"]
                entry.pending.extend((seq, b'{"type":"token","delta":"dup"}') for seq in (4, 5))
                log._mark("m1")
                log.append("m1", StoppedEvent(reason="stop_requested"))
                got = await read_all(log, "m1")
            finally:
                await log.aclose()
        assert [seq for seq, _ in got] == [1, 2, 3, 4, 5, 6]
        assert all(getattr(e, "delta", "") != "dup" for _, e in got)

    async def test_many_answers_at_once_are_each_exact(self, connect: ConnectionFactory) -> None:
        """30 answers written interleaved (one writer, pipelined) are each read exactly elsewhere."""
        async with connect() as conn_a, connect() as conn_b:
            log_a, log_b = redis_log(conn_a), redis_log(conn_b)
            try:
                ids = [f"m{i}" for i in range(30)]
                scripts = {mid: answer_events(mid, 20) for mid in ids}
                for mid in ids:
                    log_a.create(mid, TENANT)
                    log_a.append(mid, scripts[mid][0])
                for mid in ids:  # a client learns an id from its stored start event
                    await read_all_until(log_a, mid, 1)
                async with asyncio.TaskGroup() as tg:
                    readers = [tg.create_task(read_all(log_b, mid)) for mid in ids]
                    for step in range(1, len(scripts[ids[0]])):
                        for mid in ids:
                            log_a.append(mid, scripts[mid][step])
                        await asyncio.sleep(0)
            finally:
                await log_a.aclose()
                await log_b.aclose()
        for mid, reader in zip(ids, readers, strict=True):
            assert reader.result() == list(enumerate(scripts[mid], start=1))

    async def test_a_cancelled_remote_reader_leaves_the_client_usable(
        self, connect: ConnectionFactory
    ) -> None:
        """Cancelling a reader blocked in XREAD propagates CancelledError and the client keeps working."""
        async with connect() as conn_a, connect() as conn_b:
            log_a, log_b = redis_log(conn_a), redis_log(conn_b)
            log_a.create("m1", TENANT)
            log_a.append("m1", StartEvent(message_id="m1", conversation_id="c1"))
            await read_all_until(log_a, "m1", 1)
            reader = asyncio.create_task(read_all(log_b, "m1", 1))
            await asyncio.sleep(0.1)
            reader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            log_a.append("m1", StoppedEvent(reason="stop_requested"))
            assert [seq for seq, _ in await read_all(log_b, "m1", 1)] == [2]
            await log_a.aclose()
            await log_b.aclose()


class TestRedisFailures:
    async def test_redis_down_is_redis_unavailable_not_a_hang(self) -> None:
        """With nothing listening, check and tenant_of raise RedisUnavailable (503) within the timeout."""
        conn = RedisConnection(
            RedisSettings(url=f"redis://127.0.0.1:{free_port()}", timeout=0.5, max_retries=0)
        )
        log = redis_log(conn)
        try:
            async with asyncio.timeout(3):
                with pytest.raises(RedisUnavailable) as err:
                    await log.check("m1", TENANT, 0)
                with pytest.raises(RedisUnavailable):
                    await log.tenant_of("m1")
        finally:
            await log.aclose()
            await conn.aclose()
        assert (err.value.code, err.value.status) == ("redis_unavailable", 503)

    async def test_an_outage_is_reported_to_readers_then_the_writer_catches_up(
        self, own_redis_server: RedisServer
    ) -> None:
        """Redis stops mid-answer: append keeps returning at once, a waiting reader gets redis_unavailable
        within about the timeout; Redis returns (empty, no persistence): the writer stores what it held, a
        resume after the last seen seq is exact, and the lost head is reported as unknown, never gapped."""
        settings = RedisSettings(url=own_redis_server.url, timeout=0.5, max_retries=0, lease_seconds=5)
        conn = RedisConnection(settings)
        log = redis_log(conn)
        events = answer_events("m1", 6)
        try:
            log.create("m1", TENANT)
            for e in events[:4]:
                log.append("m1", e)
            assert len(await read_all_until(log, "m1", 4)) == 4
            own_redis_server.stop()
            started = time.perf_counter()
            for e in events[4:]:
                log.append("m1", e)
            append_ms = (time.perf_counter() - started) * 1000
            waiting = time.monotonic()
            with pytest.raises(RedisUnavailable):
                await read_all(log, "m1", 4)
            reported_after = time.monotonic() - waiting
            own_redis_server.start()
            async with asyncio.timeout(5):
                rest = await read_all(log, "m1", 4)
            with pytest.raises(UnknownMessage):
                await read_all(log, "m1", 0)
        finally:
            await log.aclose()
            await conn.aclose()
        assert append_ms < 5
        assert reported_after < 2.5
        assert rest == list(enumerate(events, start=1))[4:]


async def read_all_until(log: EventLog, message_id: str, count: int) -> list[tuple[int, ChatEvent]]:
    """The first `count` events (for answers that have not ended yet)."""
    got: list[tuple[int, ChatEvent]] = []
    async with asyncio.timeout(5):
        events = log.read(message_id, TENANT, 0)
        try:
            async for item in events:
                got.append(item)
                if len(got) == count:
                    break
        finally:
            await events.aclose()  # type: ignore[attr-defined]
    return got
