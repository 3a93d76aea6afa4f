"""permessage-deflate is negotiated only when server.websocket_compression is on (chatbot/serving.py)."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import pytest
from quart import Quart, websocket
from websockets.asyncio.client import connect

from chatbot.serving import _PROTOCOL_MODULES, install_protocol_fixes
from tests.serving import serve_app


@contextlib.contextmanager
def protocol_fixes(*, compression: bool) -> Iterator[None]:
    """The serve path's fixes for the duration of a test; hypercorn's own stream class restored after."""
    modules = []
    for name in _PROTOCOL_MODULES:
        with contextlib.suppress(ImportError):
            modules.append(importlib.import_module(name))
    saved = [(m, m.WSStream) for m in modules]
    install_protocol_fixes(compression=compression)
    try:
        yield
    finally:
        install_protocol_fixes()
        for module, original in saved:
            module.WSStream = original


def echo_app() -> Quart:
    app = Quart(__name__)

    @app.websocket("/echo")
    async def echo() -> None:
        await websocket.accept()
        while True:
            await websocket.send(await websocket.receive())

    return app


@pytest.mark.parametrize("compression", [False, True], ids=["declined", "accepted"])
async def test_deflate_offer_is_accepted_only_when_configured(compression: bool) -> None:
    """A browser-like client offering deflate gets it only with compression on; frames round trip either way."""
    with protocol_fixes(compression=compression):
        async with serve_app(echo_app()) as url:
            ws_url = url.replace("http://", "ws://") + "/echo"
            async with connect(ws_url, compression="deflate", ping_interval=None) as ws:
                extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                frame = '{"type":"token","delta":"é ' + "x" * 2000 + '"}'
                await ws.send(frame)
                assert await ws.recv() == frame
    assert (extensions is not None and "permessage-deflate" in extensions) is compression


async def test_a_client_that_offers_nothing_gets_nothing() -> None:
    """Compression on still needs the client's offer: no offer, no extension."""
    with protocol_fixes(compression=True):
        async with serve_app(echo_app()) as url:
            ws_url = url.replace("http://", "ws://") + "/echo"
            async with connect(ws_url, compression=None, ping_interval=None) as ws:
                assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
                await ws.send("ping")
                assert await ws.recv() == "ping"
