"""Server-sent events: framing, heartbeats, and the headers that keep proxies from buffering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
HEARTBEAT = b": keep-alive\n\n"


def sse_event(data: str, *, event: str | None = None, event_id: int | str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


class Heartbeat:
    """Marker yielded by `with_heartbeats` when `interval` passed without an item."""


HEARTBEAT_TICK = Heartbeat()


async def with_heartbeats(items: AsyncIterator[T], interval: float) -> AsyncIterator[T | Heartbeat]:
    """Yield items as they come, and HEARTBEAT_TICK after every `interval` seconds of quiet.

    The pending `anext` is kept across heartbeats (never cancelled by a heartbeat), so the source stays intact.
    On exit the pending step is cancelled and awaited, so the source's own cleanup has run when this returns.
    """
    pending: asyncio.Task[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait((pending,), timeout=interval)
            if not done:
                yield HEARTBEAT_TICK
                continue
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.wait((pending,))
            if not pending.cancelled():
                pending.exception()  # retrieved, so it is not reported as lost
