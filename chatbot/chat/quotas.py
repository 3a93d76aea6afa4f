"""Rate limits and budgets, the same on HTTP and websocket, counted in-process or in Redis (services.counters).

Only the chat service (chat/service.py) calls the admission steps, in its one order; this module counts.
- requests per minute per caller (an API key, a widget visitor, or the tenant in open access): every HTTP
  request and websocket ask; a widget caller's client address counts too (address_requests_per_minute);
- concurrent answers per tenant and per widget visitor: slots taken before an answer starts, given back at its
  terminal event;
- tokens per day per tenant, and a share of it per widget visitor: checked before an answer starts, counted
  while it streams; an answer that exhausts a budget is ended with a `quota_exceeded` error event;
- open websocket connections per tenant and per widget visitor.
Widget traffic never takes the last api_key_reserve of a tenant's tokens, answer slots or connections: one
visitor, or all of them, cannot lock the tenant's API keys out. Refusals are RateLimited / QuotaExceeded (HTTP
429 with Retry-After, or an error frame with retry_after).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatbot.chat.caller import Caller
from chatbot.errors import QuotaExceeded, RateLimited
from chatbot.events import ChatEvent, DoneEvent, TokenEvent, is_terminal
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
    slots: tuple[str, ...]  # the concurrency slots it holds
    budgets: tuple[tuple[str, int], ...]  # (counter key, cap) its tokens count against
    counted: int = 0  # tokens already added to the day's totals
    pending: int = 0  # streamed tokens not yet added


def widget_share(limit: int, reserve: float) -> int:
    """The part of a tenant's slot `limit` widget traffic may hold: the rest (rounded up) is kept for API keys."""
    return limit - math.ceil(limit * reserve)


@dataclass(eq=False)
class Quotas:
    counters: Counters
    settings: QuotaSettings
    on_exhausted: Callable[[str], object] = lambda _message_id: None  # ends that answer (the service sets it)
    slot_ttl: float = 600.0  # longer than an answer can run (deadlines.answer + grace)
    _running: dict[str, _Running] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def admit_request(self, caller: Caller) -> None:
        """Count one request of `caller` against requests_per_minute (and, for a widget caller, its address's
        address_requests_per_minute), or raise RateLimited."""
        limit = self.settings.requests_per_minute
        if limit and (wait := await self.counters.hit(f"rpm:{caller.rate_key}", limit, MINUTE)) is not None:
            raise RateLimited(f"More than {limit} requests per minute.", retry_after=wait)
        limit = self.settings.address_requests_per_minute
        if limit and caller.untrusted and caller.address:
            key = f"rpm:address:{caller.tenant}:{caller.address}"
            if (wait := await self.counters.hit(key, limit, MINUTE)) is not None:
                raise RateLimited(
                    f"More than {limit} requests per minute from this address.", retry_after=wait
                )

    async def open_connection(self, caller: Caller) -> tuple[str, ...]:
        """Take the caller's websocket connection slots (its tenant's, and a widget visitor's own); the keys
        taken, to give back with close_connection. RateLimited (and none held) when one is not free."""
        wanted = []
        if limit := self.settings.websocket_connections:
            wanted.append((f"ws:{caller.tenant}", self._tenant_cap(caller, limit), "This tenant has"))
        if (limit := self.settings.visitor_websocket_connections) and _visitor(caller):
            wanted.append((f"ws:{_visitor(caller)}", limit, "This visitor has"))
        return await self._take(wanted, "open connections already", CONNECTION_TTL, retry_after=5.0)

    async def close_connection(self, slots: tuple[str, ...]) -> None:
        for key in slots:
            await self.counters.release(key)

    async def begin_answer(self, caller: Caller, message_id: str) -> None:
        """Before an answer starts: its concurrency slots, then the day's budgets, or a refusal (and no slot)."""
        settings, visitor = self.settings, _visitor(caller)
        wanted = []
        if limit := settings.concurrent_answers:
            wanted.append((f"answers:{caller.tenant}", self._tenant_cap(caller, limit), "This tenant has"))
        if (limit := settings.visitor_concurrent_answers) and visitor:
            wanted.append((f"answers:{visitor}", limit, "This visitor has"))
        slots = await self._take(wanted, "answers running already", self.slot_ttl, retry_after=1.0)
        budgets: list[tuple[str, int]] = []
        if budget := settings.tokens_per_day:
            tenant_cap = (
                budget if not caller.untrusted else math.floor(budget * (1 - settings.api_key_reserve))
            )
            budgets.append((f"tokens:{caller.tenant}", tenant_cap))
            if visitor and settings.visitor_token_share:
                budgets.append((f"tokens:{visitor}", math.floor(budget * settings.visitor_token_share)))
        for key, cap in budgets:
            if await self.counters.add(key, 0, DAY) >= cap:
                await self.close_connection(slots)  # gives the answer slots back, as for a connection
                raise QuotaExceeded(retry_after=_until_midnight_utc())
        self._running[message_id] = _Running(caller.tenant, slots, tuple(budgets))

    async def abandon(self, message_id: str) -> None:
        """The answer did not start after all (e.g. busy): give its slots back."""
        running = self._running.pop(message_id, None)
        if running is not None:
            await self.close_connection(running.slots)

    def _tenant_cap(self, caller: Caller, limit: int) -> int:
        return widget_share(limit, self.settings.api_key_reserve) if caller.untrusted else limit

    async def _take(
        self, wanted: list[tuple[str, int, str]], what: str, ttl: float, *, retry_after: float
    ) -> tuple[str, ...]:
        taken: list[str] = []
        for key, cap, who in wanted:
            if cap <= 0 or not await self.counters.acquire(key, cap, ttl):
                await self.close_connection(tuple(taken))
                raise RateLimited(f"{who} {max(cap, 0)} {what}.", retry_after=retry_after)
            taken.append(key)
        return tuple(taken)

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
                self._spawn(self._account(answer.message_id, running, amount))
        elif is_terminal(event):
            del self._running[answer.message_id]
            total = (
                event.usage.total_tokens
                if isinstance(event, DoneEvent)
                else running.counted + running.pending
            )
            rest = max(0, total - running.counted)
            self._spawn(self._finish(running, rest))

    async def _account(self, message_id: str, running: _Running, amount: int) -> None:
        exhausted = False
        for key, cap in running.budgets:
            exhausted = await self.counters.add(key, amount, DAY) >= cap or exhausted
        if exhausted:
            log.info("a token budget of tenant %s ran out; ending answer %s", running.tenant, message_id)
            self.on_exhausted(message_id)

    async def _finish(self, running: _Running, rest: int) -> None:
        if rest:
            for key, _cap in running.budgets:
                await self.counters.add(key, rest, DAY)
        await self.close_connection(running.slots)

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


def _visitor(caller: Caller) -> str:
    """The counter name of a widget caller's visitor ('' for other callers, or a token without one)."""
    return f"visitor:{caller.tenant}:{caller.visitor}" if caller.untrusted and caller.visitor else ""


def _until_midnight_utc() -> float:
    now = time.time()
    return DAY - now % DAY
