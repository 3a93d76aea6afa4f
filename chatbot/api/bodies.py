"""Request bodies read to the route's own limit, while they arrive, with or without Content-Length.

Quart's ASGI connection reads the whole body into memory as soon as the request starts, up to the app-wide
MAX_CONTENT_LENGTH (sized for uploads), before any route runs: a chunked body to a JSON route was buffered to
~400 MiB before the route's 64 KiB check. Here the connection receives no body until the route is known: the
before_request hook calls `limit_body(route)`, which sets that route's limit (routes.BodyLimit) and its body
timeout. Until then hypercorn's bounded queue holds the first chunks and TCP flow control the rest. Past the
limit the body raises 413 at once (and what was received is dropped); a body not whole within the timeout
raises 408, so a slow body holds at most its route's limit, for at most limits.body_timeout_seconds.
"""

from __future__ import annotations

import asyncio
from typing import IO, Any

from hypercorn.typing import ASGIReceiveCallable
from quart import request
from quart.asgi import ASGIHTTPConnection
from quart.formparser import FormDataParser
from quart.wrappers.request import Body, Request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from chatbot.api.routes import Route
from chatbot.settings import LimitSettings


def body_limit(route: Route, limits: LimitSettings) -> int:
    """The most `route` reads of a body, in bytes (its declared max_body, sized by settings)."""
    if route.max_body == "chat":
        return limits.max_chat_body_bytes
    if route.max_body == "upload":
        return limits.max_upload_bytes * limits.max_files_per_upload + limits.max_frame_bytes
    return limits.max_frame_bytes


class RouteBody(Body):
    """A body that takes no data until its route's limit is set, counts every byte received (not only the
    unread ones: a route reading incrementally is bounded too), and expires after the body timeout."""

    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._expected = expected_content_length
        self._received = 0
        self._limited = asyncio.Event()
        self._deadline: asyncio.TimerHandle | None = None

    def limit(self, max_bytes: int, timeout: float) -> None:
        """Read at most `max_bytes`, within `timeout` seconds from now; then let the body in."""
        self._max_content_length = max_bytes
        if max(self._expected or 0, self._received) > max_bytes:
            self._must_raise = RequestEntityTooLarge()
            self._data.clear()
            self.set_complete()
        elif not self._complete.is_set():
            self._deadline = asyncio.get_running_loop().call_later(timeout, self._refuse, RequestTimeout())
        self._limited.set()

    async def limited(self) -> None:
        await self._limited.wait()

    def append(self, data: bytes) -> None:
        if self._must_raise is not None:
            return
        self._received += len(data)
        if self._max_content_length is not None and self._received > self._max_content_length:
            self._refuse(RequestEntityTooLarge())
            return
        super().append(data)

    def set_complete(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().set_complete()

    def _refuse(self, error: Exception) -> None:
        if self._complete.is_set() and self._must_raise is None:
            return  # whole already: too late to time out
        self._must_raise = error
        self._data.clear()
        self.set_complete()


class _FormParser(FormDataParser):
    """Quart's form parser, which ends a cut-off body's parse as if the body were whole (an empty or partial
    form) and leaves the files it spooled open: here the body's error (413/408) is raised and they are closed."""

    async def parse(
        self, body: Body, mimetype: str, content_length: int | None, options: dict[str, str] | None = None
    ) -> tuple[MultiDict[str, Any], MultiDict[str, Any]]:
        spooled: list[IO[bytes]] = []
        factory = self.stream_factory

        def tracked(*args: Any, **kwargs: Any) -> IO[bytes]:
            spooled.append(factory(*args, **kwargs))
            return spooled[-1]

        self.stream_factory = tracked
        try:
            parsed = await super().parse(body, mimetype, content_length, options)
            refused(body)
            return parsed
        except BaseException:
            for file in spooled:
                file.close()
            raise


def refused(body: Body) -> None:
    """Raise the error that cut `body` off (413 over the limit, 408 too slow), if one did."""
    if isinstance(body, RouteBody) and body._must_raise is not None:
        raise body._must_raise


class RouteRequest(Request):
    body_class = RouteBody
    form_data_parser_class = _FormParser


class RouteHTTPConnection(ASGIHTTPConnection):
    """Quart's connection, receiving body chunks only once the route set its limit (RouteBody.limit)."""

    async def handle_messages(self, request: Request, receive: ASGIReceiveCallable) -> None:
        if isinstance(request.body, RouteBody):
            await request.body.limited()
        await super().handle_messages(request, receive)


def limit_body(route: Route | None, limits: LimitSettings) -> None:
    """Let the current request's body in, up to `route`'s limit (none for an unknown route)."""
    body = request.body
    if isinstance(body, RouteBody):
        body.limit(0 if route is None else body_limit(route, limits), limits.body_timeout_seconds)
