"""Allowed hosts (issue 14 item 10): a page on an attacker's name that resolves to the server (DNS rebinding)
sends its own name as Host (and as the websocket Origin); the server answers only the names it is meant to."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from quart import Quart
from websockets.exceptions import InvalidStatus

from chatbot.api.auth import allowed_hosts, check_host
from chatbot.api.routes import ROUTES
from chatbot.app import create_app
from chatbot.errors import BadRequest
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import ask_ws

EVIL = "rebind.evil.example"
HOSTILE_HOSTS = [
    EVIL,
    f"{EVIL}:8000",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "127.0.0.1@evil.example",
    "evil.example#127.0.0.1",
    "localhost:8000:evil",
    "localhost:",
    "127.0.0.2",
    "0.0.0.0",
    "[::2]",
    "localhost\u3002evil",
]


@pytest.fixture
async def dev_app(offline_providers: Providers, small_store: VectorStore) -> AsyncIterator[tuple[str, Quart]]:
    """The dev app (open access, default allowed hosts) on 127.0.0.1."""
    settings = make_settings()
    async with build_services(settings, providers=offline_providers, store=small_store) as svc:
        app = create_app(settings, services=svc)
        async with serve_app(app) as url:
            yield url, app


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def ws_as(host: str) -> str:
    """The websocket URL with `host` as its authority (the Host header sent); connect with loopback()."""
    return f"ws://{host}/v1/ws"


def loopback(url: str) -> dict[str, object]:
    """Where to connect whatever the URL's host: the server on 127.0.0.1 (as if the name resolved to it)."""
    return {"host": "127.0.0.1", "port": int(port_of(url))}


async def refused_handshake(url: str, host: str, origin: str | None = None) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(ws_as(host), origin=origin, **loopback(url)):  # type: ignore[arg-type]
            pass
    return caught.value.response.status_code, caught.value.response.body or b""


class TestDevDefaults:
    @pytest.mark.parametrize("host", HOSTILE_HOSTS)
    async def test_hostile_host_is_refused_on_http(self, dev_app: tuple[str, Quart], host: str) -> None:
        """Another name, a lookalike or a malformed Host: 400 host_not_allowed with the JSON error body."""
        async with httpx.AsyncClient(base_url=dev_app[0]) as client:
            r = await client.get("/healthz", headers={"Host": host.encode()})  # bytes: non-ASCII too
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "host_not_allowed"
        assert error["request_id"]

    async def test_every_http_route_refuses_a_foreign_host(self, dev_app: tuple[str, Quart]) -> None:
        """Each route and method the app serves (public ones too) refuses Host: <attacker's name>."""
        url, app = dev_app
        checked = 0
        async with httpx.AsyncClient(base_url=url) as client:
            for decl in app.extensions[ROUTES].values():
                if decl.method == "WEBSOCKET":
                    continue
                path = re.sub(r"<[^>]+>", "sample", decl.path)
                r = await client.request(decl.method, path, headers={"Host": f"{EVIL}:{port_of(url)}"})
                assert r.status_code == 400, (decl.endpoint, r.status_code)
                error = r.json()["error"]
                if decl.error_shape == "anthropic":  # Anthropic's error object has a type, not our code
                    assert error["type"] == "invalid_request_error", error
                else:
                    assert error["code"] == "host_not_allowed", error
                checked += 1
            preflight = await client.options(
                "/v1/chat",
                headers={"Host": EVIL, "Origin": f"http://{EVIL}", "Access-Control-Request-Method": "POST"},
            )
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        assert checked >= 19

    async def test_rebound_websocket_is_refused(self, dev_app: tuple[str, Quart]) -> None:
        """The rebinding handshake (Host and Origin both the attacker's name) is refused with 400."""
        url = dev_app[0]
        host = f"{EVIL}:{port_of(url)}"
        status, body = await refused_handshake(url, host, origin=f"http://{host}")
        assert status == 400
        assert json.loads(body)["error"]["code"] == "host_not_allowed"

    @pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LocalHost", "[::1]"])
    async def test_loopback_names_on_any_port_are_served(self, dev_app: tuple[str, Quart], name: str) -> None:
        """127.0.0.1, localhost (any case) and [::1], with the port or without: served over HTTP and websocket."""
        url = dev_app[0]
        async with httpx.AsyncClient(base_url=url) as client:
            for host in (name, f"{name}:{port_of(url)}", f"{name}:1"):
                assert (await client.get("/healthz", headers={"Host": host})).status_code == 200, host
        host = f"{name}:{port_of(url)}"
        async with websockets.connect(ws_as(host), origin=f"http://{host.lower()}", **loopback(url)) as ws:  # type: ignore[arg-type]
            frames = await ask_ws(ws, "How do I stop an answer?")
        assert frames[-1]["type"] == "done"


class TestConfigured:
    async def test_listed_names_only(self, offline_providers: Providers, small_store: VectorStore) -> None:
        """server.allowed_hosts replaces the defaults: a listed name is served, loopback names are not."""
        settings = make_settings(server={"allowed_hosts": ["chat.example.com", "api.example.com:8443"]})
        async with (
            build_services(settings, providers=offline_providers, store=small_store) as svc,
            serve_app(create_app(settings, services=svc)) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            statuses = {
                host: (await client.get("/healthz", headers={"Host": host})).status_code
                for host in (
                    "chat.example.com",
                    "chat.example.com:443",
                    "api.example.com:8443",
                    "api.example.com:443",
                    "api.example.com",
                    "localhost",
                    "evil.chat.example.com",
                )
            }
        assert statuses == {
            "chat.example.com": 200,
            "chat.example.com:443": 200,
            "api.example.com:8443": 200,
            "api.example.com:443": 400,
            "api.example.com": 400,
            "localhost": 400,
            "evil.chat.example.com": 400,
        }


class TestAllowedHostsSetting:
    def test_dev_default_is_loopback_and_the_configured_host(self) -> None:
        """In dev, empty allowed_hosts means the loopback names plus server.host (unless it is a wildcard)."""
        assert allowed_hosts(make_settings()) == {"127.0.0.1", "localhost", "[::1]"}
        assert allowed_hosts(make_settings(server={"host": "chat.lan"})) == {
            "127.0.0.1",
            "localhost",
            "[::1]",
            "chat.lan",
        }
        assert allowed_hosts(make_settings(server={"host": "0.0.0.0"})) == {"127.0.0.1", "localhost", "[::1]"}
        assert "[fe80::1]" in (allowed_hosts(make_settings(server={"host": "fe80::1"})) or ())

    def test_star_and_prod_allow_any(self) -> None:
        """'*' allows any Host; prod without a list allows any (it has API keys; list names to restrict)."""
        assert allowed_hosts(make_settings(server={"allowed_hosts": ["*"]})) is None
        key = {"id": "ops", "sha256": "0" * 64, "tenant": "acme", "roles": ["admin"]}
        prod = make_settings(env="prod", auth={"api_keys": [key], "token_secret": "s" * 40})
        assert allowed_hosts(prod) is None
        listed = make_settings(
            env="prod",
            auth={"api_keys": [key], "token_secret": "s" * 40},
            server={"allowed_hosts": ["a.example"]},
        )
        assert allowed_hosts(listed) == {"a.example"}
        check_host(EVIL, None)

    @pytest.mark.parametrize("host", [*HOSTILE_HOSTS, "", None, " ", "[::1", "::1"])
    def test_check_host_refuses_hostile_values(self, host: str | None) -> None:
        """Lookalikes, malformed and missing Host values raise host_not_allowed."""
        with pytest.raises(BadRequest) as refused:
            check_host(host, frozenset({"127.0.0.1", "localhost", "[::1]"}))
        assert refused.value.code == "host_not_allowed"
