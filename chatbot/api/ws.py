"""WebSocket /v1/ws: JSON text frames, many turns per connection.

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

from quart import Blueprint, current_app, g, jsonify, websocket

from chatbot.api.asks import start_answer
from chatbot.api.auth import authorize, bind, identify
from chatbot.api.context import KEYRING, services, tenant
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
from chatbot.chat.answers import REPLACED
from chatbot.errors import AnswerInProgress, BadRequest, Busy, ChatbotError, OriginNotAllowed, PayloadTooLarge
from chatbot.ops.observability import bind_request_id

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
    return bool(host) and urlsplit(origin).netloc == host


class Connection:
    def __init__(self) -> None:
        self.svc = services()
        self.tenant = tenant()
        self.client = websocket.remote_addr or ""  # limits.max_connections_per_client counts by address
        self.current: str | None = None
        self.pumps: dict[str, asyncio.Task[None]] = {}
        self.closing = asyncio.Event()
        self.close_code = CLOSE_SERVICE_RESTART

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
                        await websocket.close(self.close_code)
            else:
                receiving.result()
        finally:
            tasks = [receiving, closing, *self.pumps.values()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive_loop(self) -> None:
        limit = self.svc.settings.limits.max_frame_bytes
        while True:
            raw = await websocket.receive() or b""  # Quart hands over an empty binary frame as None
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
            await self._ask(frame)
        elif isinstance(frame, StopFrame):
            message_id = frame.message_id or self.current
            if message_id is None:
                raise BadRequest("No answer is running on this connection.", code="nothing_to_stop")
            await self.svc.answers.stop(message_id, self.tenant)
        elif isinstance(frame, ResumeFrame):
            await self.svc.answers.log.check(frame.message_id, self.tenant, frame.after)
            self._follow(frame.message_id, frame.after)
        else:
            await self.send({"type": "pong"})

    async def _ask(self, frame: AskFrame) -> None:
        if self.svc.quotas is not None:
            await self.svc.quotas.admit_request(g.identity.subject)
        if self.current is not None and self._running(self.current):
            if self.svc.settings.stream.on_busy_connection == "refuse":
                raise AnswerInProgress()
            await self.svc.answers.stop(self.current, self.tenant, REPLACED)
        message_id, _ = await start_answer(frame.message, frame.conversation_id)
        self.current = message_id
        self._follow(message_id, 0)

    def _running(self, message_id: str) -> bool:
        try:
            return not self.svc.answers.get(message_id, self.tenant).finished
        except ChatbotError:
            return False

    def _follow(self, message_id: str, after: int) -> None:
        old = self.pumps.pop(message_id, None)
        if old is not None:
            old.cancel()
        self.pumps[message_id] = asyncio.create_task(self._pump(message_id, after))

    async def _pump(self, message_id: str, after: int) -> None:
        events = self.svc.answers.read(message_id, self.tenant, after)
        try:
            async for seq, event in events:
                await self.send(event_frame(message_id, seq, event))
        except ChatbotError as exc:
            await self.send(error_frame(exc, message_id=message_id))
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            if self.pumps.get(message_id) is asyncio.current_task():
                del self.pumps[message_id]

    async def send(self, frame: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self.svc.settings.stream.send_timeout):
                await websocket.send(dumps(frame))
        except TimeoutError:
            log.info(
                "websocket client did not read for %ss; disconnecting", self.svc.settings.stream.send_timeout
            )
            self.close(CLOSE_TRY_AGAIN_LATER)  # run() closes the socket and cancels the pumps


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
    try:  # an API key, a widget token (?token=, origin-bound) or open access
        identity = identify(svc.settings, current_app.extensions[KEYRING], websocket.headers, websocket.args)
        authorize(identity, websocket.endpoint)
        bind(identity)
    except ChatbotError as refused:
        return jsonify({"error": refused.to_dict()}), refused.status
    if identity.origin is None and not origin_allowed(
        websocket.headers.get("Origin"), websocket.headers.get("Host"), svc.settings.server.allowed_origins
    ):
        return jsonify({"error": OriginNotAllowed().to_dict()}), 403
    if len(svc.connections) >= svc.settings.limits.max_connections:
        err = Busy("Too many open connections.", retry_after=5.0)
        return jsonify({"error": err.to_dict()}), 429
    client = websocket.remote_addr or ""
    if (
        sum(1 for c in svc.connections if c.client == client)
        >= svc.settings.limits.max_connections_per_client
    ):
        err = Busy("Too many open connections from this address.", retry_after=5.0)
        return jsonify({"error": err.to_dict()}), 429
    bind_request_id(websocket.headers.get("X-Request-ID", "")[:64])  # the connection's log lines carry it
    slot = False
    if svc.quotas is not None:
        try:
            slot = await svc.quotas.open_connection(identity.tenant)
        except ChatbotError as refused:
            return jsonify({"error": refused.to_dict()}), refused.status
    try:
        conn = Connection()
        await websocket.accept()
        svc.connections.add(conn)
        try:
            await conn.run()
        finally:
            svc.connections.discard(conn)
    finally:
        if slot and svc.quotas is not None:
            await svc.quotas.close_connection(identity.tenant)
    return None
