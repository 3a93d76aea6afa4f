"""The in-process implementations: one process's event logs, conversations, counters and feedback (bounded).

Redis implements the same Protocols (stores/redis/) when several instances must behave as one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from chatbot.errors import UnknownConversation, UnknownMessage
from chatbot.events import ChatEvent, is_terminal
from chatbot.stores.base import AnsweredTurn, Feedback, check_limit
from chatbot.stores.ids import new_conversation_id
from chatbot.stores.records import Turn

# -- event log --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    tenant: str
    events: deque[tuple[int, ChatEvent]]
    last_seq: int = 0
    finished: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    expiry: asyncio.TimerHandle | None = None


class MemoryEventLog:
    """Keeps at most `max_events` per answer and forgets an answer `expire_seconds` after its terminal event."""

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


# -- conversations ----------------------------------------------------------------------------------


class MemoryConversationStore:
    """Bounded: at most `max_conversations` (least recently used dropped), `max_turns` turns each."""

    def __init__(self, *, max_conversations: int, max_turns: int) -> None:
        self._max_conversations = max_conversations
        self._max_turns = max(2, max_turns)
        self._items: OrderedDict[tuple[str, str], deque[Turn]] = OrderedDict()

    async def create(self, tenant: str) -> str:
        cid = new_conversation_id()
        self._items[(tenant, cid)] = deque(maxlen=self._max_turns)
        while len(self._items) > self._max_conversations:
            self._items.popitem(last=False)
        return cid

    async def exists(self, tenant: str, conversation_id: str) -> bool:
        return (tenant, conversation_id) in self._items

    async def history(self, tenant: str, conversation_id: str, limit: int) -> list[Turn]:
        turns = self._get(tenant, conversation_id)
        return list(turns)[-limit:] if limit > 0 else []

    async def append(self, tenant: str, conversation_id: str, turns: list[Turn]) -> None:
        self._get(tenant, conversation_id).extend(turns)

    def _get(self, tenant: str, conversation_id: str) -> deque[Turn]:
        key = (tenant, conversation_id)
        try:
            turns = self._items[key]
        except KeyError:
            raise UnknownConversation() from None
        self._items.move_to_end(key)
        return turns


# -- counters ---------------------------------------------------------------------------------------


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
        check_limit(limit, window_seconds)
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
        check_limit(1, window_seconds)
        self._tick()
        now = time.time()
        start = now - now % window_seconds
        was_start, total = self._totals.get(key, (start, 0))
        total = (total if was_start == start else 0) + amount
        self._totals[key] = (start, total)
        return total

    async def acquire(self, key: str, limit: int, ttl: float) -> bool:
        check_limit(limit, ttl)
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


# -- feedback ---------------------------------------------------------------------------------------


class MemoryFeedbackStore:
    """The last `max_answers` answered turns of the process and their ratings (the oldest answer is forgotten
    first, with its ratings: this store is for one process and a development box; use Redis to keep them)."""

    def __init__(self, *, max_answers: int) -> None:
        self._max = max(1, max_answers)
        self._turns: OrderedDict[tuple[str, str], tuple[AnsweredTurn, dict[str, Feedback]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._turns)

    async def record(self, turn: AnsweredTurn) -> None:
        key = (turn.tenant, turn.message_id)
        old = self._turns.pop(key, None)
        self._turns[key] = (turn, old[1] if old is not None else {})
        while len(self._turns) > self._max:
            self._turns.popitem(last=False)

    async def turn(self, tenant: str, message_id: str) -> AnsweredTurn | None:
        found = self._turns.get((tenant, message_id))
        return found[0] if found is not None else None

    async def rate(self, tenant: str, feedback: Feedback) -> bool:
        found = self._turns.get((tenant, feedback.message_id))
        if found is None:
            raise UnknownMessage()
        replaced = feedback.user in found[1]
        found[1][feedback.user] = feedback
        return replaced

    async def rated(self, tenant: str | None = None) -> AsyncIterator[tuple[AnsweredTurn, list[Feedback]]]:
        for (owner, _), (turn, votes) in list(self._turns.items()):
            if votes and (tenant is None or owner == tenant):
                yield turn, list(votes.values())
