"""Rate limits and budgets, the same on HTTP and websocket, counted in-process or in Redis (services.counters).

Only the chat service (chat/service.py) calls the admission steps, in its one order; this module counts.
- requests per minute per caller (API key, widget origin or tenant): every HTTP request and websocket ask;
- concurrent answers per tenant: a slot taken before an answer starts, given back at its terminal event;
- tokens per day per tenant: checked before an answer starts, counted while it streams; an answer that
  exhausts the budget is ended with a `quota_exceeded` error event;
- open websocket connections per tenant.
Refusals are RateLimited / QuotaExceeded (HTTP 429 with Retry-After, or an error frame with retry_after).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatbot.errors import QuotaExceeded, RateLimited
from chatbot.rag.events import ChatEvent, DoneEvent, TokenEvent, is_terminal
from chatbot.settings import QuotaSettings
from chatbot.stores.base import Counters

if TYPE_CHECKING:
    from chatbot.chat.answers import Answer

log = logging.getLogger(__name__)

DAY = 86_400.0
MINUTE = 60.0
ACCOUNT_EVERY = 32  # streamed tokens between budget checks
CONNECTION_TTL = 6 * 3600.0  # a slot of a crashed instance frees itself after this


@dataclass(slots=True)
class _Running:
    tenant: str
    slot: bool
    counted: int = 0  # tokens already added to the day's total
    pending: int = 0  # streamed tokens not yet added


@dataclass(eq=False)
class Quotas:
    counters: Counters
    settings: QuotaSettings
    on_exhausted: Callable[[str], object] = lambda _message_id: None  # ends that answer (the service sets it)
    slot_ttl: float = 600.0  # longer than an answer can run (deadlines.answer + grace)
    _running: dict[str, _Running] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def admit_request(self, subject: str) -> None:
        """Count one request of `subject` against requests_per_minute, or raise RateLimited."""
        limit = self.settings.requests_per_minute
        if limit and (wait := await self.counters.hit(f"rpm:{subject}", limit, MINUTE)) is not None:
            raise RateLimited(f"More than {limit} requests per minute.", retry_after=wait)

    async def open_connection(self, tenant: str) -> bool:
        """Take a websocket connection slot; True if one was taken (give it back with close_connection)."""
        limit = self.settings.websocket_connections
        if not limit:
            return False
        if not await self.counters.acquire(f"ws:{tenant}", limit, CONNECTION_TTL):
            raise RateLimited(f"This tenant has {limit} open connections already.", retry_after=5.0)
        return True

    async def close_connection(self, tenant: str) -> None:
        await self.counters.release(f"ws:{tenant}")

    async def begin_answer(self, tenant: str, message_id: str) -> None:
        """Before an answer starts: a concurrency slot, then the day's budget, or a refusal (and no slot)."""
        slot = False
        if limit := self.settings.concurrent_answers:
            if not await self.counters.acquire(f"answers:{tenant}", limit, self.slot_ttl):
                raise RateLimited(f"This tenant has {limit} answers running already.", retry_after=1.0)
            slot = True
        budget = self.settings.tokens_per_day
        if budget and await self.counters.add(f"tokens:{tenant}", 0, DAY) >= budget:
            if slot:
                await self.counters.release(f"answers:{tenant}")
            raise QuotaExceeded(retry_after=_until_midnight_utc())
        self._running[message_id] = _Running(tenant, slot)

    async def abandon(self, message_id: str) -> None:
        """The answer did not start after all (e.g. busy): give its slot back."""
        running = self._running.pop(message_id, None)
        if running is not None and running.slot:
            await self.counters.release(f"answers:{running.tenant}")

    def observe(self, answer: Answer, event: ChatEvent) -> None:
        """Answer observer: counts tokens against the budget and frees the slot at the end."""
        running = self._running.get(answer.message_id)
        if running is None:
            return
        if isinstance(event, TokenEvent):
            running.pending += max(1, len(event.delta.split()))
            if self.settings.tokens_per_day and running.pending >= ACCOUNT_EVERY:
                amount, running.pending = running.pending, 0
                running.counted += amount
                self._spawn(self._account(answer.message_id, running.tenant, amount))
        elif is_terminal(event):
            del self._running[answer.message_id]
            total = (
                event.usage.total_tokens
                if isinstance(event, DoneEvent)
                else running.counted + running.pending
            )
            rest = max(0, total - running.counted)
            self._spawn(self._finish(running, rest))

    async def _account(self, message_id: str, tenant: str, amount: int) -> None:
        total = await self.counters.add(f"tokens:{tenant}", amount, DAY)
        if total >= self.settings.tokens_per_day:
            log.info("tenant %s exhausted its token budget; ending answer %s", tenant, message_id)
            self.on_exhausted(message_id)

    async def _finish(self, running: _Running, rest: int) -> None:
        if rest and self.settings.tokens_per_day:
            await self.counters.add(f"tokens:{running.tenant}", rest, DAY)
        if running.slot:
            await self.counters.release(f"answers:{running.tenant}")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("quota accounting failed", exc_info=task.exception())

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)


def _until_midnight_utc() -> float:
    now = time.time()
    return DAY - now % DAY
