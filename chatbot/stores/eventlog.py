"""Per-answer event logs with sequence numbers. Connections are readers; an answer is the only writer.

The in-process log keeps at most `max_events` per answer and forgets an answer `expire_seconds` after its
terminal event. A Redis Streams log implements the same Protocol for several instances.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from chatbot.errors import UnknownMessage
from chatbot.rag.events import ChatEvent, is_terminal


class EventLog(Protocol):
    def create(self, message_id: str, tenant: str) -> None: ...

    def append(self, message_id: str, event: ChatEvent) -> int:
        """Add an event; returns its sequence number (1, 2, ...). Never blocks."""
        ...

    def read(self, message_id: str, tenant: str, after: int = 0) -> AsyncIterator[tuple[int, ChatEvent]]:
        """Every event with seq > after, in order, waiting for new ones until the terminal event.
        Raises UnknownMessage for an unknown, expired or other tenant's message."""
        ...

    async def tenant_of(self, message_id: str) -> str | None: ...

    async def check(self, message_id: str, tenant: str, after: int) -> None:
        """Raise UnknownMessage unless read(message_id, tenant, after) can start."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    tenant: str
    events: deque[tuple[int, ChatEvent]]
    last_seq: int = 0
    finished: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    expiry: asyncio.TimerHandle | None = None


class MemoryEventLog:
    def __init__(self, *, max_events: int, expire_seconds: float) -> None:
        self._max_events = max_events
        self._expire_seconds = expire_seconds
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def create(self, message_id: str, tenant: str) -> None:
        self._entries[message_id] = _Entry(tenant=tenant, events=deque(maxlen=self._max_events))

    async def tenant_of(self, message_id: str) -> str | None:
        entry = self._entries.get(message_id)
        return entry.tenant if entry else None

    def append(self, message_id: str, event: ChatEvent) -> int:
        entry = self._entries[message_id]
        if entry.finished:
            raise RuntimeError(f"answer {message_id} already ended")
        entry.last_seq += 1
        entry.events.append((entry.last_seq, event))
        if is_terminal(event):
            entry.finished = True
            entry.expiry = asyncio.get_running_loop().call_later(
                self._expire_seconds, self._entries.pop, message_id, None
            )
        waiters, entry.waiters = entry.waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        return entry.last_seq

    async def check(self, message_id: str, tenant: str, after: int) -> None:
        entry = self._entries.get(message_id)
        if entry is None or entry.tenant != tenant:
            raise UnknownMessage()
        if after < 0 or after > entry.last_seq:
            raise UnknownMessage(f"This answer has no event after seq {after}; its last is {entry.last_seq}.")
        if entry.events and entry.events[0][0] > after + 1:
            raise UnknownMessage("The events after that seq are no longer kept; ask again.")

    async def read(
        self, message_id: str, tenant: str, after: int = 0
    ) -> AsyncIterator[tuple[int, ChatEvent]]:
        await self.check(message_id, tenant, after)
        entry = self._entries[message_id]
        loop = asyncio.get_running_loop()
        while True:
            if entry.last_seq > after:
                first_seq = entry.events[0][0]
                if first_seq > after + 1:
                    raise UnknownMessage("The reader fell too far behind and events were dropped.")
                pending = [entry.events[i] for i in range(after + 1 - first_seq, len(entry.events))]
                for seq, event in pending:
                    after = seq
                    yield seq, event
                continue
            if entry.finished:
                return
            waiter = loop.create_future()
            entry.waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    async def aclose(self) -> None:
        for entry in self._entries.values():
            if entry.expiry:
                entry.expiry.cancel()
            for w in entry.waiters:
                w.cancel()
        self._entries.clear()
