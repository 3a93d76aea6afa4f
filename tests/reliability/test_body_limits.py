"""Every route stops reading a request body at its own declared limit, with or without Content-Length, and a
slow body is cut off after the route's body timeout (issue 14, item 1). The class: every declared POST route,
attacked with a chunked body one byte over its limit that never ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from chatbot.api.bodies import body_limit
from chatbot.api.routes import Route
from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services

LIMITS = {
    "max_frame_bytes": 4096,
    "max_chat_body_bytes": 16384,
    "max_upload_bytes": 8192,
    "max_files_per_upload": 3,
    "body_timeout_seconds": 1.5,
}


def post_routes() -> list[Route]:
    """Every declared POST route of the app (the class under attack)."""
    from chatbot.api.routes import ROUTES

    app = create_app(make_settings(limits=LIMITS))
    table: dict[str, Route] = app.extensions[ROUTES]
    return sorted((r for r in table.values() if r.method == "POST"), key=lambda r: r.path)


POST_ROUTES = post_routes()


@pytest.fixture
async def served(
    offline_providers: Providers, small_store: VectorStore
) -> AsyncIterator[tuple[str, Services]]:
    async with serve_services(make_settings(limits=LIMITS), offline_providers, small_store) as running:
        yield running


def concrete(path: str) -> str:
    return path.replace("<message_id>", "m-1").replace("<doc_id>", "d-1").replace("<conversation_id>", "c-1")


async def chunked_status(
    url: str, decl: Route, *, send: int, chunk: int = 1024, wait: float = 5.0
) -> int | None:
    """POST `send` bytes as chunks (no Content-Length, body never terminated); the status line the server
    answers within `wait` seconds, or None when it waits for more body."""
    host, port = url.removeprefix("http://").split(":")
    media_type = decl.body_media_type + (
        "; boundary=b" if decl.body_media_type.startswith("multipart/") else ""
    )
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {concrete(decl.path)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent = 0
        if decl.body_media_type.startswith("multipart/"):  # a well-formed start: one file, still arriving
            part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.md"\r\n\r\n'
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            sent += len(part)
        while sent < send:
            size = min(chunk, send - sent)
            writer.write(f"{size:x}\r\n".encode() + b"x" * size + b"\r\n")
            sent += size
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), wait)
        except TimeoutError:
            return None
        return int(line.split()[1]) if line else None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize("decl", POST_ROUTES, ids=[r.path for r in POST_ROUTES])
async def test_chunked_body_over_the_route_limit_is_refused_while_it_is_sent(
    served: tuple[str, Services], decl: Route
) -> None:
    """A chunked body one byte over the route's own limit, never finished: 413 at once, not after the body
    (a route without a body model answers without reading it)."""
    limit = body_limit(decl, served[1].settings.limits)
    assert limit < served[1].settings.limits.max_upload_bytes * 4  # the route's limit, not the app-wide one
    status = await chunked_status(served[0], decl, send=limit + 1, wait=1.0)
    assert status is not None
    assert status == 413 or decl.body is None, status


@pytest.mark.parametrize("decl", POST_ROUTES, ids=[r.path for r in POST_ROUTES])
async def test_slow_body_is_cut_off_after_the_body_timeout(served: tuple[str, Services], decl: Route) -> None:
    """A body under the limit that never ends is refused with 408 after limits.body_timeout_seconds (a route
    without a body model answers without waiting for it)."""
    status = await chunked_status(served[0], decl, send=100, wait=5.0)
    assert status is not None
    assert status == 408 or decl.body is None, status


async def test_json_route_limits_come_from_settings(served: tuple[str, Services]) -> None:
    """JSON routes take max_frame_bytes, history-carrying routes max_chat_body_bytes, uploads the files' total."""
    limits = served[1].settings.limits
    by_path = {r.path: body_limit(r, limits) for r in POST_ROUTES}
    assert by_path["/v1/chat"] == limits.max_frame_bytes
    assert by_path["/v1/chat/completions"] == limits.max_chat_body_bytes
    assert by_path["/v1/ui/chat"] == limits.max_chat_body_bytes
    assert by_path["/v1/documents"] >= limits.max_upload_bytes * limits.max_files_per_upload
