"""Fail-closed roles (issue 14 item 3): every endpoint of the URL map, HTTP and websocket, refuses a credential
that lacks the role the endpoint declares; unknown endpoints, the static route and error routes give nothing
away. The route list is the app's own, so a new route is attacked without editing this file."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from quart import Quart, websocket
from websockets.exceptions import InvalidStatus

from chatbot.api.auth import new_api_key
from chatbot.api.routes import ROUTES, Route
from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.widget_tokens import mint, signing_key
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import ws_url

SITE = "https://site.example"
TOKEN_SECRET = "r" * 40
# credential name -> (roles it holds, how it is sent)
HOLDS = {
    "widget": {"chat"},
    "chat_key": {"chat"},
    "ingest_key": {"ingest"},
    "admin_key": {"chat", "ingest", "admin"},
}


_ANTHROPIC_TYPES = {
    "authentication_error": "unauthorized",
    "permission_error": "forbidden",
    "not_found_error": "not_found",
}


def error_code(body: dict[str, Any]) -> str:
    """The error's code: native and OpenAI bodies carry `code`; Anthropic's carry a `type` we map back."""
    error = body["error"]
    return str(error.get("code") or _ANTHROPIC_TYPES.get(error.get("type", ""), error.get("type")))


@dataclass
class Keyed:
    url: str
    app: Quart
    headers: dict[str, dict[str, str]]  # credential name -> request headers

    @property
    def routes(self) -> list[Route]:
        return list(self.app.extensions[ROUTES].values())


@pytest.fixture
async def keyed(offline_providers: Providers, small_store: VectorStore) -> AsyncIterator[Keyed]:
    """The app with API keys configured (no open access), a chat-only, an ingest-only and an admin key, and a
    widget token for SITE; plus one route added after create_app without a declaration."""
    headers: dict[str, dict[str, str]] = {}
    specs = []
    for name, tenant, roles in (
        ("chat_key", "public", ["chat"]),
        ("ingest_key", "public", ["ingest"]),
        ("admin_key", "public", ["admin"]),
    ):
        key, sha256 = new_api_key()
        specs.append({"id": name, "sha256": sha256, "tenant": tenant, "roles": roles})
        headers[name] = {"Authorization": f"Bearer {key}"}
    settings = make_settings(auth={"api_keys": specs, "token_secret": TOKEN_SECRET})
    token, _ = mint(signing_key(settings.auth), tenant="public", origin=SITE, ttl_seconds=300)
    headers["widget"] = {"X-Widget-Token": token, "Origin": SITE}
    async with build_services(settings, providers=offline_providers, store=small_store) as svc:
        app = create_app(settings, services=svc)

        async def undeclared() -> Any:
            return {"secret": "reached"}

        async def undeclared_socket() -> None:
            await websocket.accept()
            await websocket.send("reached")

        app.add_url_rule("/v1/undeclared", "undeclared", undeclared, methods=["GET", "POST"])
        app.add_websocket("/v1/undeclared-ws", "undeclared_ws", undeclared_socket)
        async with serve_app(app) as url:
            yield Keyed(url=url, app=app, headers=headers)


def sample_path(rule: str) -> str:
    return re.sub(r"<[^>]+>", "sample", rule)


async def call(client: httpx.AsyncClient, decl: Route, headers: dict[str, str]) -> httpx.Response:
    body = {"json": {}} if decl.method in ("POST", "PUT", "PATCH") else {}
    return await client.request(decl.method, sample_path(decl.path), headers=headers, **body)  # type: ignore[arg-type]


class TestEveryEndpointChecksItsRole:
    def test_every_endpoint_in_the_url_map_is_attacked(self, keyed: Keyed) -> None:
        """The walk covers every rule of the URL map (HTTP and websocket) but the one added undeclared."""
        rules = {r.endpoint for r in keyed.app.url_map.iter_rules()}
        assert rules - {d.endpoint for d in keyed.routes} == {"undeclared", "undeclared_ws"}
        assert {d.role for d in keyed.routes} == {"public", "chat", "ingest", "admin"}
        assert any(d.method == "WEBSOCKET" for d in keyed.routes)

    @pytest.mark.parametrize("credential", ["widget", "chat_key", "ingest_key"])
    async def test_http_endpoints_refuse_a_credential_without_their_role(
        self, keyed: Keyed, credential: str
    ) -> None:
        """Each HTTP endpoint whose declared role the credential lacks: 403 forbidden, naming the role."""
        refused = 0
        async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as client:
            for decl in keyed.routes:
                if decl.method == "WEBSOCKET" or decl.public or decl.role in HOLDS[credential]:
                    continue
                r = await call(client, decl, keyed.headers[credential])
                assert r.status_code == 403, (decl.endpoint, r.status_code, r.text)
                assert error_code(r.json()) == "forbidden", decl.endpoint
                assert decl.role in r.json()["error"]["message"], decl.endpoint
                refused += 1
        assert refused >= 4

    @pytest.mark.parametrize("credential", ["widget", "chat_key", "ingest_key", "admin_key"])
    async def test_http_endpoints_admit_a_credential_with_their_role(
        self, keyed: Keyed, credential: str
    ) -> None:
        """Where the credential holds the declared role, the role check lets it through (never a role 403; an
        empty body stops the answer routes at validation)."""
        async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as client:
            for decl in keyed.routes:
                if decl.method == "WEBSOCKET" or not (decl.public or decl.role in HOLDS[credential]):
                    continue
                r = await call(client, decl, keyed.headers[credential])
                assert r.status_code != 401, (decl.endpoint, r.text)
                if r.status_code == 403:
                    assert "role" not in r.json()["error"]["message"], (decl.endpoint, r.text)

    @pytest.mark.parametrize("credential", ["widget", "chat_key", "ingest_key", "admin_key"])
    async def test_websocket_endpoints_check_the_role_in_the_handshake(
        self, keyed: Keyed, credential: str
    ) -> None:
        """A websocket endpoint refuses the handshake (403 forbidden) to a credential without its role and
        accepts one with it."""
        sockets = [d for d in keyed.routes if d.method == "WEBSOCKET"]
        for decl in sockets:
            headers = dict(keyed.headers[credential])
            origin = headers.pop("Origin", None)
            url = ws_url(keyed.url, decl.path)
            if decl.role in HOLDS[credential]:
                async with websockets.connect(url, additional_headers=headers, origin=origin):  # type: ignore[arg-type]
                    pass
                continue
            with pytest.raises(InvalidStatus) as refused:
                async with websockets.connect(url, additional_headers=headers, origin=origin):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403, decl.endpoint
            assert b'"forbidden"' in (refused.value.response.body or b""), decl.endpoint

    async def test_no_credential_is_401_on_every_non_public_endpoint(self, keyed: Keyed) -> None:
        """Without a credential (keys configured), every non-public HTTP endpoint answers 401 unauthorized."""
        async with httpx.AsyncClient(base_url=keyed.url, timeout=30) as client:
            for decl in keyed.routes:
                if decl.method == "WEBSOCKET" or decl.public:
                    continue
                r = await call(client, decl, {})
                assert r.status_code == 401, (decl.endpoint, r.status_code)
                assert error_code(r.json()) == "unauthorized"


class TestLoopLagReset:
    @pytest.mark.parametrize("credential", ["widget", "chat_key"])
    async def test_chat_credentials_cannot_reset_the_looplag_monitor(
        self, keyed: Keyed, credential: str
    ) -> None:
        """POST /debug/looplag/reset is admin-only: a widget token or a chat key gets 403 forbidden (it was 200)."""
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            r = await client.post("/debug/looplag/reset", headers=keyed.headers[credential])
            admin = await client.post("/debug/looplag/reset", headers=keyed.headers["admin_key"])
        assert r.status_code == 403, r.text
        assert error_code(r.json()) == "forbidden"
        assert admin.status_code == 200


class TestUnknownAndErrorRoutes:
    @pytest.mark.parametrize("credential", ["widget", "chat_key", "admin_key"])
    async def test_an_undeclared_endpoint_is_refused_to_everyone(self, keyed: Keyed, credential: str) -> None:
        """A route mounted without a declaration (after create_app's check) is refused: no default role."""
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            for method in ("GET", "POST"):
                r = await client.request(method, "/v1/undeclared", headers=keyed.headers[credential])
                assert r.status_code == 403, r.text
                assert error_code(r.json()) == "forbidden"
                assert "reached" not in r.text

    @pytest.mark.parametrize("credential", ["widget", "chat_key", "admin_key"])
    async def test_an_undeclared_websocket_is_refused_to_everyone(
        self, keyed: Keyed, credential: str
    ) -> None:
        """A websocket mounted without a declaration is refused in the handshake (403), before its body runs."""
        headers = dict(keyed.headers[credential])
        origin = headers.pop("Origin", None)
        url = ws_url(keyed.url, "/v1/undeclared-ws")
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=headers, origin=origin):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        assert b'"forbidden"' in (refused.value.response.body or b"")

    async def test_there_is_no_static_route(self, keyed: Keyed) -> None:
        """The app serves no /static/<path> (the widget serves its files itself): 404 for the package files."""
        assert all(r.endpoint != "static" for r in keyed.app.url_map.iter_rules())
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            for path in ("/static/widget.js", "/static/demo.html", "/static/../app.py"):
                r = await client.get(path, headers=keyed.headers["widget"])
                assert r.status_code == 404, path
                assert error_code(r.json()) == "not_found"

    @pytest.mark.parametrize("credential", [None, "widget", "ingest_key"])
    async def test_error_routes_answer_json_and_nothing_else(
        self, keyed: Keyed, credential: str | None
    ) -> None:
        """Unknown paths (404) and wrong methods (405 with Allow) answer the JSON error, with or without a
        credential, and run no route."""
        headers = keyed.headers[credential] if credential else {}
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            missing = await client.post("/v1/nothing-here", headers=headers, json={})
            wrong = await client.delete("/debug/looplag/reset", headers=headers)
        assert missing.status_code == 404
        assert error_code(missing.json()) == "not_found"
        assert wrong.status_code == 405
        assert error_code(wrong.json()) == "method_not_allowed"
        assert wrong.headers["allow"] == "OPTIONS, POST"
