"""Protocol fixes for hypercorn's websocket stream (hypercorn 0.17-0.18, wsproto 1.2-1.3), installed by the serve
path with install_protocol_fixes() before hypercorn starts.

1. Protocol violations end with a close frame. When a client breaks RFC 6455 (reserved bits, a reserved
   opcode, a fragmented or oversized control frame, invalid UTF-8 in a text message or a close reason, an
   invalid close code), wsproto yields a CloseConnection event carrying 1002 or 1007 while its state stays
   OPEN: the caller is expected to send that close frame. hypercorn only answers a CloseConnection in state
   REMOTE_CLOSING (a close the client sent), so it drops TCP without a close frame; RFC 6455 7.1.7 says the
   server SHOULD send the close frame first. Our stream sends it, ignores what follows, and closes TCP once
   the client has answered with its close frame or gone quiet (at most LINGER_MAX seconds later).
2. Pings after quiet, not at accept. hypercorn pings as soon as it accepts and then every
   websocket_ping_interval; ours pings only once the connection has carried no frame in either direction for
   websocket_ping_interval seconds (the keep-alive the README promises with stream.heartbeat_seconds).
3. Compression can be declined. hypercorn accepts permessage-deflate whenever a client offers it (browsers
   always do) and has no setting to decline it; ours declines it when server.websocket_compression is off.
   Deflating every frame cost 8% of the server's CPU per turn at 50 conversations (A/B, bench/profile_hot.py)
   and keeps ~300 KB of zlib state per connection; the frames themselves are the same JSON either way. It
   stays on by default: an uncompressed frame over websocket_max_message_size is not yet closed with 1009
   in time (tests/reliability/test_fuzz_ws.py passes only with deflate negotiated).

hypercorn builds its websocket streams from a module-level name in each protocol module (h11, h2, h3) and has
no setting for the class, so installing the subclass means rebinding that name: a monkeypatch of hypercorn
internals, kept to one subclass (its _handle_events is hypercorn's with one condition widened) and checked
by tests/reliability/test_autobahn.py (Autobahn|Testsuite cases 1-7), so an upgrade that changes these
internals fails loudly. Drop it when hypercorn answers wsproto's failure events itself.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from types import ModuleType
from typing import Any

from hypercorn.protocol.events import Data, Event, StreamClosed
from hypercorn.protocol.ws_stream import FrameTooLargeError, WSStream
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping
from wsproto.frame_protocol import CloseReason

LINGER_QUIET = 0.05
"""Seconds without data from the client after which a failed connection is closed."""
LINGER_MAX = 1.0
"""Longest a failed connection stays open waiting for the client to go quiet."""
_CLOSE_FRAME_START = b"\x88"  # FIN + opcode 8: what a client's close frame starts with
_PROTOCOL_MODULES = ("hypercorn.protocol.h11", "hypercorn.protocol.h2", "hypercorn.protocol.h3")


class ProtocolCorrectWSStream(WSStream):
    """hypercorn's WSStream, closing with the failure's code on a protocol violation, pinging after quiet, and
    negotiating permessage-deflate only when `compression` is set."""

    compression: bool = True  # set process-wide by install_protocol_fixes
    _last_traffic: float = 0.0
    _failed_at: float | None = None  # when wsproto failed the connection and we sent our close frame

    async def handle(self, event: Event) -> None:
        if isinstance(event, Data):
            self._last_traffic = time.monotonic()
            if self._failed_at is not None:
                # after a failure nothing more is parsed (RFC 6455 7.1.7); the client's close frame ends it
                if event.data[:1] == _CLOSE_FRAME_START:
                    await self._end()
                return
        await super().handle(event)

    async def _handle_events(self) -> None:
        """hypercorn's WSStream._handle_events with one change, marked below."""
        for event in self.connection.events():
            if isinstance(event, Message):
                try:
                    self.buffer.extend(event)
                except FrameTooLargeError:
                    await self._send_wsproto_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                    break
                if event.message_finished:
                    await self.app_put(self.buffer.to_message())  # type: ignore[misc]
                    self.buffer.clear()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection) and self.connection.state is ConnectionState.OPEN:
                # the change: in state OPEN the close is wsproto failing the connection (event.code is 1002 or
                # 1007), so the close frame is ours to send; then linger before closing TCP (see _linger)
                await self._send_wsproto_event(event.response())
                self._failed_at = time.monotonic()
                self.task_group.spawn(self._linger, self._failed_at)
                return
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    async def _linger(self, failed_at: float) -> None:
        """Close TCP once the client has gone quiet (LINGER_QUIET) or after LINGER_MAX. Closing at once, with the
        rest of the bad frame still arriving, makes the kernel answer with a reset, and a reset can destroy
        the close frame before the client reads it."""
        while not self.closed:
            now = time.monotonic()
            wait = min(LINGER_QUIET - (now - self._last_traffic), LINGER_MAX - (now - failed_at))
            if wait <= 0:
                break
            await self.context.sleep(wait)
        await self._end()

    async def _end(self) -> None:
        if not self.closed:
            await self.send(StreamClosed(stream_id=self.stream_id))

    async def _accept(self, message: Any) -> None:
        if not self.compression:
            self.handshake.extensions = None  # as if the client offered none: the accept names no extension
        await super()._accept(message)

    async def _send_wsproto_event(self, event: Any) -> None:
        self._last_traffic = time.monotonic()
        await super()._send_wsproto_event(event)

    async def _send_pings(self) -> None:
        interval = self.config.websocket_ping_interval or 0.0
        self._last_traffic = max(self._last_traffic, time.monotonic())
        while not self.closed:
            quiet = time.monotonic() - self._last_traffic
            if quiet < interval:
                await self.context.sleep(interval - quiet)
                continue
            await self._send_wsproto_event(Ping())


def install_protocol_fixes(*, compression: bool = True) -> None:
    """Make hypercorn build ProtocolCorrectWSStream for every websocket (idempotent; process-wide); without
    `compression`, its websockets decline permessage-deflate."""
    ProtocolCorrectWSStream.compression = compression
    for module in _protocol_modules():
        setattr(module, "WSStream", ProtocolCorrectWSStream)  # noqa: B010 - the module attribute is the hook


def _protocol_modules() -> list[ModuleType]:
    """hypercorn's protocol modules that can load here (h3 needs the optional aioquic)."""
    modules = []
    for name in _PROTOCOL_MODULES:
        with contextlib.suppress(ImportError):
            modules.append(importlib.import_module(name))
    return modules
