"""CORS and websocket Origin, per route: a disallowed Origin gets no Access-Control-Allow-Origin (and a 403 on
the websocket handshake); an allowed one gets its origin back; preflights answer for allowed origins only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from quart import Quart
from websockets.exceptions import InvalidStatus

from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import ask_ws, ws_url

ALLOWED = "https://allowed.example"
DISALLOWED = "https://evil.example"


def http_routes() -> list[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves, path parameters filled in."""
    app = create_app(make_settings())
    routes = set()
    for rule in app.url_map.iter_rules():
        if getattr(rule, "websocket", False):
            continue
        path = re.sub(r"<(?:[a-z]+:)?[A-Za-z_]+>", "x1", rule.rule)
        routes |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    return sorted(routes)


ROUTES = http_routes()


@pytest.fixture
async def cors_app(
    offline_providers: Providers, small_store: VectorStore
) -> AsyncIterator[tuple[str, Quart]]:
    """The offline app with one allowed origin."""
    settings = make_settings(server={"allowed_origins": [ALLOWED]})
    async with build_services(settings, providers=offline_providers, store=small_store) as svc:
        app = create_app(settings, services=svc)
        async with serve_app(app) as url:
            yield url, app


async def send(client: httpx.AsyncClient, method: str, path: str, origin: str) -> httpx.Response:
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return await client.request(method, path, headers={"Origin": origin}, **body)  # type: ignore[arg-type]


class TestCorsPerRoute:
    def test_every_route_is_covered(self) -> None:
        """The route list is the app's own (a new route is checked without editing this file)."""
        assert ("POST", "/v1/chat") in ROUTES
        assert ("POST", "/v1/chat/completions") in ROUTES
        assert len(ROUTES) >= 15

    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_disallowed_origin_gets_no_allow_origin(
        self, cors_app: tuple[str, Quart], method: str, path: str
    ) -> None:
        """Whatever the status, a response to another origin carries no Access-Control-Allow-Origin."""
        async with httpx.AsyncClient(base_url=cors_app[0], timeout=20) as client:
            response = await send(client, method, path, DISALLOWED)
        assert response.status_code < 500
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers

    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_allowed_origin_is_echoed(
        self, cors_app: tuple[str, Quart], method: str, path: str
    ) -> None:
        """An allowed origin gets itself back (never *) with Vary: Origin, on success and error alike."""
        async with httpx.AsyncClient(base_url=cors_app[0], timeout=20) as client:
            response = await send(client, method, path, ALLOWED)
        assert response.headers.get("access-control-allow-origin") == ALLOWED
        assert "Origin" in response.headers.get("vary", "")

    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_preflight(self, cors_app: tuple[str, Quart], method: str, path: str) -> None:
        """A preflight: 204 with allowed methods and headers for the allowed origin, nothing for others."""
        async with httpx.AsyncClient(base_url=cors_app[0], timeout=20) as client:
            ok = await client.options(
                path,
                headers={
                    "Origin": ALLOWED,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "content-type, authorization",
                },
            )
            refused = await client.options(
                path, headers={"Origin": DISALLOWED, "Access-Control-Request-Method": method}
            )
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert method in ok.headers["access-control-allow-methods"]
        assert "content-type" in ok.headers["access-control-allow-headers"].lower()
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-origin" not in refused.headers


class TestWebsocketOrigin:
    async def test_disallowed_origin_is_refused_with_403(self, cors_app: tuple[str, Quart]) -> None:
        """A browser page from another origin cannot open the websocket: 403 origin_not_allowed."""
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(ws_url(cors_app[0]), origin=DISALLOWED)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        assert b"origin_not_allowed" in refused.value.response.body

    @pytest.mark.parametrize("origin", [ALLOWED, None, "server's own"])
    async def test_allowed_origins_can_ask(self, cors_app: tuple[str, Quart], origin: str | None) -> None:
        """The allowed origin, no Origin (not a browser), and the server's own origin can open it and ask."""
        url = cors_app[0]
        sent = url if origin == "server's own" else origin
        async with websockets.connect(ws_url(url), origin=sent) as ws:  # type: ignore[arg-type]
            frames = await ask_ws(ws, "How do I stop an answer?")
        assert frames[-1]["type"] == "done"

    async def test_lookalike_origins_are_refused(self, cors_app: tuple[str, Quart]) -> None:
        """Prefix, suffix and scheme lookalikes of the allowed origin are not the allowed origin."""
        for lookalike in (ALLOWED + ".evil.example", "http://allowed.example", "https://xallowed.example"):
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(ws_url(cors_app[0]), origin=lookalike)  # type: ignore[arg-type]
            assert refused.value.response.status_code == 403, lookalike
