"""A small HTTP/1.1 server on asyncio streams, written for fault injection rather than speed.

Every connection has a reader task that parses requests and notices EOF or a reset at once, so a handler
that sleeps between tokens learns that the client went away (`await conn.sleep(s)` returns False) and the
close time is the moment the socket closed, not the next write. Keep-alive is the default; bodies are sent
with Content-Length, streams with chunked transfer encoding, and `conn.drop()` closes the socket mid-body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    411: "Length Required",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ClientGone(Exception):
    """The peer closed or reset the connection while we were writing."""


class Connection:
    """One accepted socket: a reader task feeding parsed requests, and write helpers for one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self._eof = asyncio.Event()
        self.eof_at: float | None = None  # monotonic time the peer closed (or reset) the socket
        self.on_eof: Callable[[float], None] | None = None  # called once, from the reader task, at EOF
        self.dropped = False  # we closed it
        self._read_task = asyncio.create_task(self._read_requests())

    @property
    def client_closed(self) -> bool:
        return self._eof.is_set()

    async def _read_requests(self) -> None:
        try:
            while True:
                head = await self._reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await self._reader.readexactly(length) if length else b""
                await self._requests.put(Request(method, target.split("?", 1)[0], headers, body))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError, ValueError):
            pass
        finally:
            self.eof_at = time.monotonic()
            self._eof.set()
            if self.on_eof is not None:
                self.on_eof(self.eof_at)
            self._requests.put_nowait(None)

    async def next_request(self) -> Request | None:
        """The next request on this connection, or None once the peer has closed it."""
        if self._eof.is_set() and self._requests.empty():
            return None
        return await self._requests.get()

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the client closes first; True if the client is still there."""
        if seconds <= 0:
            return not self._eof.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._eof.wait(), seconds)
        return not self._eof.is_set()

    async def _write(self, data: bytes) -> None:
        if self._eof.is_set() or self._writer.is_closing():
            raise ClientGone
        self._writer.write(data)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ClientGone from exc

    @staticmethod
    def _head(status: int, headers: Mapping[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        all_headers = {
            "content-type": "application/json",
            **(headers or {}),
            "content-length": str(len(body)),
        }
        await self._write(self._head(status, all_headers) + body)

    async def send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        await self.send(status, json.dumps(obj).encode(), headers)

    async def start_stream(self, status: int = 200, content_type: str = "text/event-stream") -> None:
        headers = {"content-type": content_type, "cache-control": "no-cache", "transfer-encoding": "chunked"}
        await self._write(self._head(status, headers))

    async def send_chunk(self, data: bytes) -> None:
        await self._write(b"%x\r\n%s\r\n" % (len(data), data))

    async def end_stream(self) -> None:
        await self._write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Close the socket now, whatever was (not) sent."""
        self.dropped = True
        self._writer.close()

    async def aclose(self) -> None:
        self._writer.close()
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await self._read_task
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


Handler = Callable[[Connection, Request], Awaitable[None]]


class HTTPServer:
    """Serves `handler` on 127.0.0.1; keeps count of open connections."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections_total = 0
        self.handler_errors: list[BaseException] = []  # bugs in the fake itself; fixtures assert it is empty

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def open_connections(self) -> int:
        return sum(1 for conn in self._connections if not conn.client_closed and not conn.dropped)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer)
        self._connections.add(conn)
        self.connections_total += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while (request := await conn.next_request()) is not None:
                try:
                    await self._handler(conn, request)
                except ClientGone:
                    break
                except Exception as exc:  # a bug in the fake: record it for the fixture, drop the connection
                    self.handler_errors.append(exc)
                    conn.drop()
                    break
                if conn.dropped or request.headers.get("connection", "").lower() == "close":
                    break
        finally:
            self._tasks.discard(task)
            await conn.aclose()
            self._connections.discard(conn)

    async def aclose(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._connections):
            await conn.aclose()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
