"""WebSocket /v1/ws: JSON text frames, many turns per connection. Transport only: frames in, the chat
service's connection (chat/service.py) does the asking and stopping, events out as frames.

Each connection reads answers from the event log through one pump task per answer it follows. The log is the
buffer: a pump sends one frame at a time at the client's pace, so a slow client costs one frame of memory, and
one that does not read for `stream.send_timeout` is disconnected (its answer runs on as after a disconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from quart import Blueprint, g, jsonify, websocket
from quart.typing import ResponseReturnValue
from quart.wrappers import Websocket

from chatbot.api.context import caller, services
from chatbot.api.routes import route
from chatbot.api.wire import (
    AskFrame,
    ResumeFrame,
    StopFrame,
    dumps,
    error_frame,
    event_frame,
    parse_client_frame,
)
from chatbot.chat.service import Ask, Connection, Events
from chatbot.errors import Busy, ChatbotError, OriginNotAllowed, PayloadTooLarge
from chatbot.ops.observability import bind_request_id
from chatbot.settings import Settings

log = logging.getLogger(__name__)
bp = Blueprint("ws", __name__)

CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """No Origin (a non-browser client), the server's own origin, or one listed in allowed_origins."""
    if not origin:
        return True
    if "*" in allowed or origin.rstrip("/") in (o.rstrip("/") for o in allowed):
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # e.g. "http://[": not an origin at all
        return False
    return host is not None and netloc.lower() == host.lower()


class SendDeadlines:
    """One timer for all the sends of a connection, where asyncio.timeout around each send armed and cancelled
    a timer per frame (~20 per turn). A send still pending `seconds` after it began has its task cancelled, and
    end() then tells the sender the cancellation was the deadline's. The timer is armed by a send when none is
    armed; when it fires it re-arms for the oldest send still pending, if any, so each deadline is exact."""

    __slots__ = ("_expired", "_loop", "_pending", "_seconds", "_timer")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._pending: dict[asyncio.Task[Any], float] = {}  # sending task -> loop time its send began
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, task: asyncio.Task[Any]) -> None:
        self._pending[task] = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(self._seconds, self._expire)

    def end(self, task: asyncio.Task[Any]) -> bool:
        """The task's send is over; True if its deadline cancelled it."""
        del self._pending[task]
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        oldest: float | None = None
        for task, began in self._pending.items():
            if began + self._seconds <= now:
                if task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
            elif oldest is None or began < oldest:
                oldest = began
        if oldest is not None:
            self._timer = self._loop.call_at(oldest + self._seconds, self._expire)


class Socket:
    """One accepted websocket: reads client frames, sends frames, pumps the answers it follows."""

    def __init__(self, chat: Connection, settings: Settings) -> None:
        self.chat = chat
        self.settings = settings
        self.ws: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]  # no proxy per frame
        self.client = self.ws.remote_addr or ""  # limits.max_connections_per_client counts by address
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.closing = asyncio.Event()
        self.close_code = CLOSE_SERVICE_RESTART
        self.deadlines = SendDeadlines(settings.stream.send_timeout)

    def close(self, code: int) -> None:
        self.close_code = code
        self.closing.set()

    async def run(self) -> None:
        receiving = asyncio.create_task(self._receive_loop())
        closing = asyncio.create_task(self.closing.wait())
        try:
            done, _ = await asyncio.wait((receiving, closing), return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(
                        2
                    ):  # a client that stopped reading may not take the close frame
                        await self.ws.close(self.close_code)
            else:
                receiving.result()
        finally:
            self.deadlines.close()
            tasks = [receiving, closing, *self.pumps.values()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive_loop(self) -> None:
        limit = self.settings.limits.max_frame_bytes
        while True:
            raw = await self.ws.receive() or b""  # Quart hands over an empty binary frame as None
            request_id = None
            try:
                if len(raw) > limit:
                    raise PayloadTooLarge(f"Frames are limited to {limit} bytes.")
                frame = parse_client_frame(raw)
                request_id = getattr(frame, "request_id", None)
                await self._handle(frame)
            except ChatbotError as exc:
                await self.send(error_frame(exc, request_id=request_id))

    async def _handle(self, frame: Any) -> None:
        if isinstance(frame, AskFrame):
            started = await self.chat.ask(Ask(frame.message, frame.conversation_id, where=frame.filter))
            # wait until its start frame is out: a reply to a later frame (answer_in_progress) comes after it
            await self._pump(started.message_id, await self.chat.follow(started.message_id)).wait()
        elif isinstance(frame, StopFrame):
            await self.chat.stop(frame.message_id)  # the reply is the answer's stopped frame, or an error
        elif isinstance(frame, ResumeFrame):
            self._pump(frame.message_id, await self.chat.follow(frame.message_id, frame.after))
        else:
            await self.send({"type": "pong"})

    def _pump(self, message_id: str, events: Events) -> asyncio.Event:
        """Send the answer's events from a task of their own; the returned event is set once the first
        frame is out (or the pump ended)."""
        old = self.pumps.pop(message_id, None)
        if old is not None:
            old.cancel()
        first_sent = asyncio.Event()
        self.pumps[message_id] = asyncio.create_task(self._send_events(message_id, events, first_sent))
        return first_sent

    async def _send_events(self, message_id: str, events: Events, first_sent: asyncio.Event) -> None:
        try:
            async for seq, event in events:
                await self.send(event_frame(message_id, seq, event))
                first_sent.set()
        except ChatbotError as exc:
            await self.send(error_frame(exc, message_id=message_id))
        finally:
            first_sent.set()
            await events.aclose()
            if self.pumps.get(message_id) is asyncio.current_task():
                del self.pumps[message_id]

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a frame within stream.send_timeout; past it, close the connection (1013)."""
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always called from a task
        cancelling = task.cancelling()  # cancel requests before ours (asyncio.timeout counts the same way)
        self.deadlines.begin(task)
        try:
            await self.ws.send(dumps(frame))
        except asyncio.CancelledError:
            if not (self.deadlines.end(task) and task.uncancel() <= cancelling):
                raise  # a stop or shutdown (also) asked: it stays a cancellation
        except BaseException:
            self.deadlines.end(task)
            raise
        else:
            self.deadlines.end(task)
            return
        log.info("websocket client did not read for %ss; disconnecting", self.settings.stream.send_timeout)
        self.close(CLOSE_TRY_AGAIN_LATER)  # run() closes the socket and cancels the pumps


def _refusal(err: ChatbotError, request_id: str) -> ResponseReturnValue:
    """A refused handshake: the same error body as every HTTP error, request_id included."""
    headers = {"X-Request-ID": request_id}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return jsonify({"error": {**err.to_dict(), "request_id": request_id}}), err.status, headers


def _admit_handshake() -> None:
    """Check the caller's Origin and the open connection limits; raises the refusal. The app's
    before_websocket hook identified and authorized the caller already (its declared role)."""
    svc = services()
    settings = svc.settings
    identity = g.identity
    origin, host = websocket.headers.get("Origin"), websocket.headers.get("Host")
    if identity.origin is None and not origin_allowed(origin, host, settings.server.allowed_origins):
        raise OriginNotAllowed()
    if len(svc.connections) >= settings.limits.max_connections:
        raise Busy("Too many open connections.", retry_after=5.0)
    client = websocket.remote_addr or ""
    if sum(1 for c in svc.connections if c.client == client) >= settings.limits.max_connections_per_client:
        raise Busy("Too many open connections from this address.", retry_after=5.0)


@route(
    bp,
    "WEBSOCKET",
    "/v1/ws",
    role="chat",
    admission="service",
    summary="The native protocol: ask, stop, resume and ping frames; many turns per connection.",
)
async def ws_endpoint() -> Any:
    svc = services()
    bind_request_id(
        g.request_id
    )  # assigned by the app's before_websocket hook  # the connection's log lines carry it
    async with contextlib.AsyncExitStack() as stack:
        try:
            _admit_handshake()
            chat = await stack.enter_async_context(svc.chat_service.open_connection(caller()))
        except ChatbotError as refused:
            return _refusal(refused, g.request_id)
        sock = Socket(chat, svc.settings)
        await websocket.accept()
        svc.connections.add(sock)
        try:
            await sock.run()
        finally:
            svc.connections.discard(sock)
    return None
