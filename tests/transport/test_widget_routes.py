"""Widget routes on the real app: the static files, minting tokens over HTTP, and tokens in the websocket
handshake (valid, expired, tampered, wrong origin)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from chatbot.widget_tokens import mint, signing_key, verify
from chatbot.wiring import Services
from tests.transport.clients import ask_ws, ws_url

STATIC = Path(__file__).resolve().parents[2] / "chatbot" / "static"
SITE = "https://site.example"


async def mint_over_http(base_url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url) as client:
        return await client.post("/v1/widget/tokens", json=body, headers=headers)


async def refused(url: str, **headers: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a refused websocket handshake."""
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, additional_headers=headers):
            pass
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"{}")


class TestStaticFiles:
    async def test_widget_js_is_served_as_javascript(self, served: str) -> None:
        """GET /widget.js: the file as is, JavaScript, cacheable, nosniff, cross-origin embeddable, small."""
        async with httpx.AsyncClient(base_url=served) as client:
            response = await client.get("/widget.js", headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.content == (STATIC / "widget.js").read_bytes()
        # 20 KiB as is (about 6.5 KiB gzipped): the budget rose from 16 KiB when feedback buttons and
        # per-document source grouping landed; it is a budget, raise it only for a feature
        assert len(response.content) < 20 * 1024
        assert response.headers["cache-control"] == "public, max-age=300"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"
        assert "innerHTML" not in response.text

    async def test_widget_js_is_gzipped_and_revalidates(self, served: str) -> None:
        """With Accept-Encoding gzip the body is gzipped; If-None-Match with the ETag gets 304."""
        async with httpx.AsyncClient(base_url=served) as client:
            async with client.stream("GET", "/widget.js", headers={"Accept-Encoding": "gzip"}) as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            assert response.headers["content-encoding"] == "gzip"
            assert gzip.decompress(raw) == (STATIC / "widget.js").read_bytes()
            assert len(raw) < 8 * 1024
            again = await client.get("/widget.js", headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""

    async def test_demo_page_embeds_the_widget(self, served: str) -> None:
        """GET / is an HTML page with the widget's script tag, no inline script, and a strict CSP."""
        async with httpx.AsyncClient(base_url=served) as client:
            response = await client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert '<script src="/widget.js"' in response.text
        assert "<script>" not in response.text
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp
        assert "'unsafe-inline'" not in csp
        assert "style-src 'self' 'sha256-" in csp


class TestMintOverHttp:
    async def test_mints_a_token_for_the_callers_tenant(self, served: str, services: Services) -> None:
        """POST /v1/widget/tokens returns a token for the caller's tenant and the normalised origin."""
        response = await mint_over_http(
            served, {"origin": "https://Site.Example/"}, **{"X-Chatbot-Tenant": "acme"}
        )
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["tenant"] == "acme"
        assert body["origin"] == SITE
        assert body["expires_in"] == 600
        assert abs(body["expires_at"] - (time.time() + 600)) < 5
        claims = verify(signing_key(services.settings.auth), body["token"])
        assert (claims.tenant, claims.origin, claims.exp) == ("acme", SITE, body["expires_at"])

    async def test_ttl_can_be_chosen_up_to_the_maximum(self, served: str) -> None:
        """ttl_seconds sets the lifetime; above auth.widget_token_max_ttl_seconds it is a validation error."""
        short = await mint_over_http(served, {"origin": SITE, "ttl_seconds": 60})
        assert short.json()["expires_in"] == 60
        too_long = await mint_over_http(served, {"origin": SITE, "ttl_seconds": 86_401})
        assert too_long.status_code == 422
        assert too_long.json()["error"]["code"] == "validation_error"

    async def test_a_widget_token_cannot_mint_tokens(self, served: str) -> None:
        """A page's widget token may chat but not mint tokens for other origins or longer lifetimes."""
        token = (await mint_over_http(served, {"origin": SITE})).json()["token"]
        headers = {"X-Widget-Token": token, "Origin": SITE}
        wider = {"origin": "https://evil.example", "ttl_seconds": 86_400}
        response = await mint_over_http(served, wider, **headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        assert "cannot mint" in response.json()["error"]["message"]

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            ({"origin": "site.example"}, 400, "invalid_origin"),
            ({"origin": "https://site.example/page"}, 400, "invalid_origin"),
            ({}, 422, "validation_error"),
            ({"origin": SITE, "tenant": "other"}, 422, "validation_error"),
            ({"origin": SITE, "ttl_seconds": 0}, 422, "validation_error"),
        ],
    )
    async def test_bad_requests_are_refused(
        self, served: str, body: dict[str, Any], status: int, code: str
    ) -> None:
        """A missing or malformed origin, an unknown field or a bad ttl gets a JSON error with its code."""
        response = await mint_over_http(served, body)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code


class TestTokenInHandshake:
    async def test_valid_token_admits_its_origin_and_sets_the_tenant(self, served: str) -> None:
        """A token admits its origin (not in allowed_origins) and its tenant wins over ?tenant=."""
        minted = (
            await mint_over_http(served, {"origin": SITE}, **{"X-Chatbot-Tenant": "widget-empty"})
        ).json()
        url = ws_url(served) + "?tenant=public&token=" + minted["token"]
        async with websockets.connect(url, additional_headers={"Origin": SITE}) as ws:
            frames = await ask_ws(ws, "How do I connect over websocket?")
        assert frames[-1]["type"] == "done"
        assert frames[1]["sources"] == [], "tenant widget-empty has no documents; public has the guide"

    async def test_same_origin_without_a_token_is_refused(self, served: str) -> None:
        """Without a token, that origin is refused as before (allowed_origins is empty)."""
        status, body = await refused(ws_url(served), Origin=SITE)
        assert status == 403
        assert body["error"]["code"] == "origin_not_allowed"

    async def test_expired_token_is_unauthorized(self, served: str, services: Services) -> None:
        """An expired token gets 401 unauthorized in the handshake."""
        key = signing_key(services.settings.auth)
        token, _ = mint(key, tenant="public", origin=SITE, ttl_seconds=60, now=time.time() - 120)
        status, body = await refused(ws_url(served) + "?token=" + token, Origin=SITE)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        assert "expired" in body["error"]["message"]

    @pytest.mark.parametrize("change", ["payload", "signature", "empty"])
    async def test_tampered_token_is_unauthorized(self, served: str, change: str) -> None:
        """A token with a changed payload or signature, or an empty one, gets 401 unauthorized."""
        token = (await mint_over_http(served, {"origin": SITE})).json()["token"]
        payload, signature = token.split(".")
        bad = {
            "payload": payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature,
            "signature": payload + "." + signature[::-1],
            "empty": "",
        }[change]
        status, body = await refused(ws_url(served) + "?token=" + bad, Origin=SITE)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"

    @pytest.mark.parametrize("origin", ["https://evil.example", "http://site.example", None])
    async def test_token_for_another_origin_is_forbidden(self, served: str, origin: str | None) -> None:
        """A token used from another origin (or without an Origin header) gets 403 origin_not_allowed."""
        token = (await mint_over_http(served, {"origin": SITE})).json()["token"]
        headers = {"Origin": origin} if origin else {}
        status, body = await refused(ws_url(served) + "?token=" + token, **headers)
        assert status == 403
        assert body["error"]["code"] == "origin_not_allowed"
