"""API keys, roles and tenants on every route, over HTTP and websocket, against the served app."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from chatbot.api.auth import new_api_key
from chatbot.api.routes import ROUTES
from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import collect_until_end, ws_url


@dataclass
class Keyed:
    url: str
    keys: dict[str, str]  # name -> key
    rules: list[tuple[str, str, str]]  # (endpoint, method, path with sample values)
    public: frozenset[str]  # endpoints declared role="public"

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


SPECS = {
    "chat": ("acme", ["chat"]),
    "ingest": ("acme", ["ingest"]),
    "admin": ("ops", ["admin"]),
    "other": ("globex", ["chat", "ingest"]),
}


@pytest.fixture
async def keyed(offline_providers: Providers, guide_store: VectorStore) -> AsyncIterator[Keyed]:
    keys, specs = {}, []
    for name, (tenant, roles) in SPECS.items():
        key, sha256 = new_api_key()
        keys[name] = key
        specs.append({"id": name, "sha256": sha256, "tenant": tenant, "roles": roles})
    settings = make_settings(auth={"api_keys": specs})
    async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
        app = create_app(settings, services=svc)
        rules = []
        for rule in app.url_map.iter_rules():
            path = re.sub(r"<[^>]+>", "sample", rule.rule)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}) or ["GET"]:
                rules.append((rule.endpoint, method if not rule.websocket else "WEBSOCKET", path))
        public = frozenset(e for e, decl in app.extensions[ROUTES].items() if decl.public)
        async with serve_app(app) as url:
            yield Keyed(url=url, keys=keys, rules=rules, public=public)


class TestEveryRoute:
    async def test_every_non_public_route_refuses_without_a_key(self, keyed: Keyed) -> None:
        """With keys configured, each HTTP route (but the public ones) answers 401 unauthorized without a key."""
        checked = 0
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            for endpoint, method, path in keyed.rules:
                if endpoint in keyed.public or method == "WEBSOCKET":
                    continue
                r = await client.request(method, path)
                assert r.status_code == 401, (endpoint, method, r.status_code)
                error = r.json()["error"]  # Anthropic's shape has a type and no code
                assert error.get("code", error.get("type")) in ("unauthorized", "authentication_error")
                checked += 1
        assert checked >= 8

    async def test_public_routes_stay_open(self, keyed: Keyed) -> None:
        """Health, readiness, the widget script and the demo page need no key."""
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            for path in ("/healthz", "/readyz", "/widget.js", "/"):
                assert (await client.get(path)).status_code == 200, path

    async def test_websocket_refuses_without_a_key_and_accepts_with_one(self, keyed: Keyed) -> None:
        """The websocket handshake is refused (401) without a key and accepted with a chat key."""
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(keyed.url)):
                pass
        assert refused.value.response.status_code == 401
        async with websockets.connect(ws_url(keyed.url), additional_headers=keyed.auth("chat")) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            frames = await collect_until_end(ws)
        assert frames[-1]["type"] == "done"

    async def test_a_wrong_key_is_unauthorized(self, keyed: Keyed) -> None:
        """An unknown key is 401 on HTTP (Bearer and X-API-Key) and on the websocket."""
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            r1 = await client.post(
                "/v1/chat", json={"message": "hi"}, headers={"Authorization": "Bearer nope"}
            )
            r2 = await client.post("/v1/chat", json={"message": "hi"}, headers={"X-API-Key": "nope"})
        assert r1.status_code == r2.status_code == 401
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(
                ws_url(keyed.url), additional_headers={"Authorization": "Bearer nope"}
            ):
                pass


class TestRoles:
    @pytest.mark.parametrize(
        ("key", "method", "path", "status"),
        [
            ("chat", "POST", "/v1/chat", 200),
            ("chat", "GET", "/v1/documents", 403),
            ("chat", "GET", "/metrics", 403),
            ("ingest", "GET", "/v1/documents", 200),
            ("ingest", "POST", "/v1/chat", 403),
            ("admin", "GET", "/metrics", 200),
            ("admin", "POST", "/v1/chat", 200),
            ("admin", "GET", "/v1/documents", 200),
        ],
    )
    async def test_role_per_route(self, keyed: Keyed, key: str, method: str, path: str, status: int) -> None:
        """chat keys chat, ingest keys manage documents, admin keys may do everything."""
        body: dict[str, Any] | None = {"message": "How do I stop an answer?"} if method == "POST" else None
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            r = await client.request(method, path, json=body, headers=keyed.auth(key))
        assert r.status_code == status, r.text
        if status == 403:
            assert r.json()["error"]["code"] == "forbidden"


class TestTenants:
    async def test_the_key_decides_the_tenant(self, keyed: Keyed) -> None:
        """A key's tenant wins over X-Chatbot-Tenant: each tenant sees and is answered from its own document only."""
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            for key, code in (("ingest", "PELICAN"), ("other", "ZEBRA")):
                doc = f"# Launch codes\n\nThe launch code is {code}-42.\n".encode()
                r = await client.post(
                    "/v1/documents",
                    files={"file": ("codes.md", doc)},
                    headers={**keyed.auth(key), "X-Chatbot-Tenant": "acme"},
                )
                assert r.status_code == 201
            listed = await client.get(
                "/v1/documents", headers={**keyed.auth("other"), "X-Chatbot-Tenant": "acme"}
            )
            answers = {}
            for key in ("chat", "other"):
                r = await client.post(
                    "/v1/chat",
                    json={"message": "What is the launch code?"},
                    headers={**keyed.auth(key), "X-Chatbot-Tenant": "acme"},
                )
                answers[key] = r.json()["answer"]
        assert [d["source"] for d in listed.json()["documents"]] == ["codes.md"]
        assert "PELICAN" in answers["chat"]
        assert "ZEBRA" not in answers["chat"]
        assert "ZEBRA" in answers["other"]
        assert "PELICAN" not in answers["other"]

    async def test_admin_may_act_for_a_tenant(self, keyed: Keyed) -> None:
        """An admin key honours X-Chatbot-Tenant; a chat key's tenant is fixed."""
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            as_admin = await client.get(
                "/v1/documents", headers={**keyed.auth("admin"), "X-Chatbot-Tenant": "public"}
            )
        sources = {d["source"] for d in as_admin.json()["documents"]}
        assert "websocket.md" in sources

    async def test_widget_token_minting_needs_a_key_and_uses_its_tenant(self, keyed: Keyed) -> None:
        """POST /v1/widget/tokens needs a chat key; the token carries the key's tenant, never a requested one."""
        async with httpx.AsyncClient(base_url=keyed.url) as client:
            refused = await client.post("/v1/widget/tokens", json={"origin": "https://site.example"})
            minted = await client.post(
                "/v1/widget/tokens",
                json={"origin": "https://site.example"},
                headers={**keyed.auth("chat"), "X-Chatbot-Tenant": "globex"},
            )
        assert refused.status_code == 401
        assert minted.status_code == 200
        assert minted.json()["tenant"] == "acme"
        token = minted.json()["token"]
        async with websockets.connect(
            ws_url(keyed.url) + f"?token={token}", additional_headers={"Origin": "https://site.example"}
        ) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            frames = await collect_until_end(ws)
        assert frames[-1]["type"] == "done"
