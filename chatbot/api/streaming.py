"""Streaming an answer over server-sent events, written once for every dialect.

A dialect is only a renderer, (seq, event) -> SSE frames: native frames (GET/POST /v1/chat), OpenAI
chat.completion.chunk (openai_wire.ChunkStream) or AI SDK UI message parts (vercel_wire.UIStream). Around it,
the same for all: the proxy-proof headers, a keep-alive comment after every `heartbeat` seconds of quiet,
the answer's reader closed when the client leaves (which stops an answer whose reader cannot resume), and a
failure while reading rendered as the dialect's error event, never a silent end. seq is None for an event
that is not in the answer's log (that failure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from typing import TypeVar

from quart import Response

from chatbot.api.wire import dumps, error_frame, event_frame
from chatbot.chat.service import error_of
from chatbot.errors import ChatbotError
from chatbot.events import ChatEvent, ErrorEvent, TokenEvent, is_terminal

log = logging.getLogger(__name__)
T = TypeVar("T")

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
HEARTBEAT = b": keep-alive\n\n"

Render = Callable[[int | None, ChatEvent], Iterable[bytes]]
Item = tuple[int, ChatEvent]


def sse_event(data: str, *, event: str | None = None, event_id: int | str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def native(message_id: str) -> Render:
    """Our own frames (the websocket's JSON), with `id: seq` so that Last-Event-ID resumes."""

    def render(seq: int | None, event: ChatEvent) -> list[bytes]:
        if seq is None and isinstance(event, ErrorEvent):  # not in the log: no id, so a resume is not misled
            err = ChatbotError(event.message, code=event.code, retry_after=event.retry_after)
            return [sse_event(dumps(error_frame(err, message_id=message_id)), event="error")]
        return [sse_event(dumps(event_frame(message_id, seq or 0, event)), event=event.type, event_id=seq)]

    return render


class Heartbeat:
    """Marker yielded by `with_heartbeats` when `interval` passed without an item."""


HEARTBEAT_TICK = Heartbeat()


async def with_heartbeats(items: AsyncIterator[T], interval: float) -> AsyncGenerator[T | Heartbeat, None]:
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


class EventStream:
    """One answer's events as an SSE response body in one dialect. Owns `events`: closes it when done."""

    def __init__(self, events: AsyncGenerator[Item, None], render: Render, *, heartbeat: float) -> None:
        self._events = events
        self._items = with_heartbeats(events, heartbeat)
        self._render = render
        self._held: list[Item] = []

    async def hold_until_first_token(self) -> ErrorEvent | None:
        """Read ahead until the first token, the answer's end or one heartbeat interval of quiet (the body
        replays what was read). Returns the answer's error if it failed before any token, so the caller
        can answer with a real HTTP status instead of a 200 stream (the stream is then closed)."""
        try:
            async for item in self._items:
                if isinstance(item, Heartbeat):
                    break
                self._held.append(item)
                if isinstance(item[1], TokenEvent) or is_terminal(item[1]):
                    break
        except BaseException:  # the client left, or the log failed: nothing will read the body
            await self.aclose()
            raise
        last = self._held[-1][1] if self._held else None
        if isinstance(last, ErrorEvent):
            await self.aclose()
            return last
        return None

    async def response_after_first_token(self, headers: Mapping[str, str] = SSE_HEADERS) -> Response:
        """The response once the first token is held (dialects whose clients map HTTP statuses to error
        classes: OpenAI, Anthropic); an answer that failed before it raises its error instead of a 200."""
        if (failed := await self.hold_until_first_token()) is not None:
            raise error_of(failed)
        return self.response(headers)

    def response(self, headers: Mapping[str, str] = SSE_HEADERS) -> Response:
        response = Response(self._body(), status=200, headers=dict(headers))
        response.timeout = None  # an answer may stream longer than Quart's default
        return response

    async def aclose(self) -> None:
        await self._items.aclose()
        await self._events.aclose()

    async def _body(self) -> AsyncIterator[bytes]:
        try:
            for seq, event in self._held:
                for frame in self._render(seq, event):
                    yield frame
            async for item in self._items:
                if isinstance(item, Heartbeat):
                    yield HEARTBEAT
                    continue
                for frame in self._render(*item):
                    yield frame
        except ChatbotError as exc:  # reading the log failed mid-stream
            for frame in self._render(None, _error_event(exc)):
                yield frame
        except Exception:
            log.exception("streaming an answer failed")
            for frame in self._render(None, _error_event(ChatbotError())):
                yield frame
        finally:
            await self.aclose()  # a client that left: its answer stops if its reader cannot resume


def _error_event(err: ChatbotError) -> ErrorEvent:
    return ErrorEvent(code=err.code, message=err.message, retry_after=err.retry_after)
