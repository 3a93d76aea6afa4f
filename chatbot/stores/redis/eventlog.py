"""RedisEventLog: the EventLog Protocol on Redis Streams, so an answer can be read from any instance.

Only the instance that runs an answer writes it, so it assigns seq numbers itself: append() is sync and never
waits. It encodes the event into the answer's in-process queue and wakes one background writer task, which
stores every dirty answer in one pipeline (one Lua script per answer: XADD with the explicit id `<seq>-1`,
MAXLEN ~ log_max_events; the meta hash with tenant, state and the highest stored seq; PEXPIRE). A retried
batch cannot store an event twice: the script skips seqs at or below the stored one.

Every reader reads from Redis, so a client only ever sees stored events and a resume on another instance
continues exactly after its last seq (XREAD from `<after>-1`). Readers on the writing instance wait on an
in-process signal the writer gives after each stored batch (no connection held, no polling); readers
elsewhere wait in XREAD BLOCK, re-issued every `block` seconds to see whether the answer still exists.

Lifetimes: while an answer runs its keys live `redis.lease_seconds` and the writer renews them; after the
terminal event they live `stream.grace_seconds` (at least 1 s, so readers in flight finish). If the
writing instance dies, the keys expire and readers elsewhere get unknown_message instead of waiting forever.

Redis failures: the writer keeps an answer's unstored events in order (bounded by log_max_events per
answer: in a long outage the oldest are dropped, as MAXLEN would drop them) and retries with backoff, so an
outage shorter than `redis.timeout` costs readers only latency. Readers that cannot get events for longer
raise RedisUnavailable (503, the client may resume later); they never hang. An answer whose events Redis
refuses outright (a ResponseError such as OOM) is logged and its readers get RedisUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatbot.errors import ShuttingDown, UnknownMessage
from chatbot.events import ChatEvent, is_terminal
from chatbot.stores.event_codec import decode_event, encode_event
from chatbot.stores.redis.client import RedisConnection, RedisUnavailable, key_part, redis_errors

log = logging.getLogger(__name__)

# KEYS: events stream, meta hash. ARGV: tenant, state, ttl_ms, maxlen, then (seq, event) pairs in order.
_STORE = """
local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
for i = 5, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], ARGV[i] .. '-1', 'e', ARGV[i + 1])
    last = seq
  end
end
redis.call('HSET', KEYS[2], 'tenant', ARGV[1], 'state', ARGV[2], 'last', last)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return last
"""

MIN_KEEP_SECONDS = 1.0  # an ended answer's events outlive the terminal by at least this (readers in flight)
READ_BATCH = 512
_TRANSIENT = (RedisConnectionError, RedisTimeoutError)


@dataclass(eq=False, slots=True)
class _Local:
    """An answer this instance writes."""

    tenant: str
    pending: deque[tuple[int, bytes]]  # encoded, not yet stored
    last_seq: int = 0  # assigned
    stored_seq: int = 0  # highest seq stored in Redis
    finished: bool = False  # the terminal event was appended
    failed: bool = False  # Redis refused this answer's events
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)


class RedisEventLog:
    def __init__(
        self, conn: RedisConnection, *, max_events: int, expire_seconds: float, lease_seconds: float
    ) -> None:
        self._conn = conn
        self._redis = conn.client
        self._max_events = max_events
        self._keep_ms = int(max(expire_seconds, MIN_KEEP_SECONDS) * 1000)
        self._lease_ms = int(lease_seconds * 1000)
        self._renew_every = lease_seconds / 3
        self._timeout = conn.settings.timeout
        self._block = min(1.0, lease_seconds / 3, self._timeout / 2)  # XREAD BLOCK < the read timeout
        self._store = self._redis.register_script(_STORE)
        self._local: dict[str, _Local] = {}
        self._dirty: dict[str, None] = {}  # ordered set of answers with something to store
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._dropped = 0
        self._closed = False

    def _events_key(self, message_id: str) -> str:
        return self._conn.key("answer", "{" + key_part(message_id) + "}", "events")

    def _meta_key(self, message_id: str) -> str:
        return self._conn.key("answer", "{" + key_part(message_id) + "}", "meta")

    # -- writing (the instance that runs the answer) ----------------------------------------------------

    def create(self, message_id: str, tenant: str) -> None:
        if self._closed:
            raise RuntimeError("the event log is closed")
        self._local[message_id] = _Local(tenant=tenant, pending=deque(maxlen=self._max_events))
        self._mark(message_id)  # stores the meta hash at once: stop and resume work anywhere early
        if self._writer is None:
            loop = asyncio.get_running_loop()
            self._writer = loop.create_task(self._write_loop(), name="redis-eventlog-writer")

    def append(self, message_id: str, event: ChatEvent) -> int:
        entry = self._local[message_id]
        if entry.finished:
            raise RuntimeError(f"answer {message_id} already ended")
        entry.last_seq += 1
        if len(entry.pending) == self._max_events:
            self._dropped += 1  # only in an outage: the oldest unstored event goes, as MAXLEN would drop it
        entry.pending.append((entry.last_seq, encode_event(event)))
        entry.finished = is_terminal(event)
        self._mark(message_id)
        return entry.last_seq

    def _mark(self, message_id: str) -> None:
        self._dirty[message_id] = None
        self._wake.set()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.05
        next_renew = loop.time() + self._renew_every
        while True:
            if not self._dirty:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_renew - loop.time())):
                        await self._wake.wait()
            if loop.time() >= next_renew:
                next_renew = loop.time() + self._renew_every
                for mid, entry in self._local.items():
                    if not entry.failed:
                        self._dirty[mid] = None  # renews the lease of running answers
            if not self._dirty:
                continue
            try:
                stored = await self._flush_once()
            except Exception:  # a bug must not end the writer: readers would wait for it
                log.exception("redis: the event writer failed; retrying")
                self._failing_since = self._failing_since or loop.time()
                stored = False
            if stored:
                backoff = 0.05
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _flush_once(self) -> bool:
        """Store every dirty answer in one pipeline. False when Redis could not be reached."""
        batch = [(mid, self._local[mid]) for mid in self._dirty if mid in self._local]
        self._dirty.clear()
        if not batch:
            return True
        snapshot = [(mid, entry, list(entry.pending), entry.finished) for mid, entry in batch]
        stored = False
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for mid, entry, items, finished in snapshot:
                    args: list[Any] = [entry.tenant, "done" if finished else "running"]
                    args += [self._keep_ms if finished else self._lease_ms, self._max_events]
                    for seq, data in items:
                        args += [seq, data]
                    keys = [self._events_key(mid), self._meta_key(mid)]
                    await self._store(keys=keys, args=args, client=pipe)
                results = await pipe.execute(raise_on_error=False)
            stored = True
        except RedisError as exc:
            if self._failing_since is None:
                self._failing_since = asyncio.get_running_loop().time()
                log.warning("redis: cannot store answer events (%s: %s); retrying", type(exc).__name__, exc)
            return False
        finally:
            if not stored:  # an outage or a cancellation: store them on the next round
                for mid, _entry in batch:
                    self._dirty[mid] = None
        if self._failing_since is not None:
            log.warning("redis: storing answer events again")
            self._failing_since = None
        for (mid, entry, _items, _finished), result in zip(snapshot, results, strict=True):
            if isinstance(result, BaseException):
                log.error("redis refused the events of answer %s: %s", mid, result)
                entry.failed = True
                entry.pending.clear()
            else:
                entry.stored_seq = max(entry.stored_seq, int(result))
                while entry.pending and entry.pending[0][0] <= entry.stored_seq:
                    entry.pending.popleft()
            entry.wake()
            if entry.finished and (entry.failed or entry.stored_seq >= entry.last_seq):
                self._local.pop(mid, None)  # done here; Redis keeps the events for the grace window
        if self._dropped:
            log.warning("redis: %d answer events were dropped during an outage", self._dropped)
            self._dropped = 0
        return True

    # -- reading (any instance) -----------------------------------------------------------------------

    async def tenant_of(self, message_id: str) -> str | None:
        entry = self._local.get(message_id)
        if entry is not None:
            return entry.tenant
        with redis_errors("tenant_of"):
            raw = await self._redis.hget(self._meta_key(message_id), "tenant")
        return raw.decode() if isinstance(raw, bytes) else None

    async def check(self, message_id: str, tenant: str, after: int) -> None:
        await self._open(message_id, tenant, after)

    async def _open(self, message_id: str, tenant: str, after: int) -> bool:
        """Raise UnknownMessage unless a read can start; True when the reader already has the terminal."""
        entry = self._local.get(message_id)
        if entry is not None:
            if entry.tenant != tenant:
                raise UnknownMessage()
            last, stored, ended = entry.last_seq, entry.stored_seq, entry.finished and after >= entry.last_seq
        else:
            with redis_errors("check"):
                meta: list[Any] = await self._redis.hmget(
                    self._meta_key(message_id), ["tenant", "state", "last"]
                )
            owner, state, raw_last = meta
            if owner is None or owner != tenant.encode():
                raise UnknownMessage()
            last = stored = int(raw_last or 0)
            ended = state == b"done" and after >= last
        if after < 0 or after > last:
            raise UnknownMessage(f"This answer has no event after seq {after}; its last is {last}.")
        if after < stored:
            with redis_errors("check"):
                first: Any = await self._redis.xrange(self._events_key(message_id), "-", "+", count=1)
            if not first or _seq(first[0][0]) > after + 1:
                raise UnknownMessage("The events after that seq are no longer kept; ask again.")
        return ended

    async def read(
        self, message_id: str, tenant: str, after: int = 0
    ) -> AsyncIterator[tuple[int, ChatEvent]]:
        if await self._open(message_id, tenant, after):
            return
        key = self._events_key(message_id)
        entry = self._local.get(message_id)
        while True:
            if entry is not None:
                await self._wait_stored(entry, after)
                items = await self._xread(key, after, block=None)
                if not items:
                    raise UnknownMessage("The events after that seq are no longer kept; ask again.")
            else:
                items = await self._xread(key, after, block=self._block)
                if not items:
                    await self._still_there(message_id)
                    continue
            for entry_id, fields in items:
                seq = _seq(entry_id)
                if seq != after + 1:
                    raise UnknownMessage("The reader fell too far behind and events were dropped.")
                event = decode_event(fields[b"e"])
                after = seq
                yield seq, event
                if is_terminal(event):
                    return

    async def _wait_stored(self, entry: _Local, after: int) -> None:
        """Until the writer has stored an event after `after` (signalled, not polled)."""
        loop = asyncio.get_running_loop()
        while entry.stored_seq <= after:
            if entry.failed:
                raise RedisUnavailable("The answer's events could not be stored.", provider="redis")
            if self._closed:
                raise ShuttingDown()
            waiter = loop.create_future()
            entry.waiters.append(waiter)
            try:
                async with asyncio.timeout(self._block):
                    await waiter
            except TimeoutError:
                since = self._failing_since
                if since is not None and loop.time() - since > self._timeout:
                    raise RedisUnavailable(provider="redis") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    entry.waiters.remove(waiter)

    async def _xread(self, key: str, after: int, *, block: float | None) -> Sequence[Any]:
        """Entries after seq `after`; a transient failure is retried for up to `redis.timeout` seconds."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._timeout
        backoff = 0.05
        while True:
            try:
                block_ms = None if block is None else int(block * 1000)
                reply = await self._redis.xread({key: f"{after}-1"}, count=READ_BATCH, block=block_ms)
                return _entries(reply)
            except _TRANSIENT as exc:
                if loop.time() + backoff >= give_up:
                    log.warning("redis: reading %s failed: %s: %s", key, type(exc).__name__, exc)
                    raise RedisUnavailable(provider="redis") from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except RedisError as exc:
                log.warning("redis: reading %s failed: %s: %s", key, type(exc).__name__, exc)
                raise RedisUnavailable(provider="redis") from exc

    async def _still_there(self, message_id: str) -> None:
        """A remote reader's idle check: the keys vanish when the writing instance died (no lease renewal)."""
        with redis_errors("read"):
            exists = await self._redis.exists(self._meta_key(message_id))
        if not exists:
            raise UnknownMessage("This answer is no longer available (its instance stopped); ask again.")

    async def aclose(self) -> None:
        """Store what is still queued (for up to `redis.timeout` seconds), then stop the writer."""
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.wait((self._writer,))
            self._writer = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout):
                while self._dirty and any(mid in self._local for mid in self._dirty):
                    if not await self._flush_once():
                        await asyncio.sleep(0.05)
        unstored = sum(len(e.pending) for e in self._local.values())
        if unstored:
            log.warning("redis: %d answer events were not stored before shutdown", unstored)
        for entry in self._local.values():
            entry.wake()
        self._local.clear()
        self._dirty.clear()


def _seq(entry_id: bytes | str) -> int:
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(raw.partition("-")[0])


def _entries(reply: Any) -> Sequence[Any]:
    """XREAD's entries for its one stream (RESP2 shape: [[key, [(id, fields), ...]]])."""
    return list(reply[0][1]) if reply else []
