"""The embeddable chat widget: GET /widget.js, GET / (a demo page that uses it), POST /v1/widget/tokens,
and the websocket hook that turns a `?token=` into the connection's tenant.

Static files are read once when the app is created (never per request) and served from memory, gzipped
when the client accepts it, with an ETag so a revalidation costs a 304.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, current_app, g, jsonify, request
from quart.blueprints import BlueprintSetupState

from chatbot.api.context import services, tenant
from chatbot.api.http import json_body
from chatbot.api.responses import WidgetToken
from chatbot.api.routes import route
from chatbot.api.wire import validate
from chatbot.errors import Forbidden, ValidationFailed
from chatbot.widget_tokens import VISITOR, mint, signing_key

bp = Blueprint("widget", __name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS_KEY = "chatbot.widget_assets"
_STYLE = re.compile(rb"<style>(.*?)</style>", re.S)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    headers: dict[str, str]


def load_asset(name: str, content_type: str, cache_control: str, **headers: str) -> Asset:
    body = (STATIC / name).read_bytes()
    etag = hashlib.sha256(body).hexdigest()[:20]
    base = {
        "Content-Type": content_type,
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        **headers,
    }
    return Asset(body, gzip.compress(body, mtime=0), etag, base)


def demo_csp(html: bytes) -> str:
    """A strict policy for the demo page: no inline script at all; its own <style> blocks by hash."""
    digests = (base64.b64encode(hashlib.sha256(css).digest()).decode() for css in _STYLE.findall(html))
    hashes = " ".join(f"'sha256-{d}'" for d in digests)
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self' {hashes}; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@bp.record
def _load_assets(state: BlueprintSetupState) -> None:
    """Read the static files once, when create_app registers this blueprint."""
    demo = (STATIC / "demo.html").read_bytes()
    state.app.extensions[ASSETS_KEY] = {
        "widget.js": load_asset(
            "widget.js",
            "text/javascript; charset=utf-8",
            "public, max-age=300",  # the URL is not versioned: a fix reaches pages within minutes
            **{"Cross-Origin-Resource-Policy": "cross-origin"},
        ),
        "demo.html": load_asset(
            "demo.html",
            "text/html; charset=utf-8",
            "no-cache",
            **{"Content-Security-Policy": demo_csp(demo), "Referrer-Policy": "no-referrer"},
        ),
    }


def serve_asset(name: str) -> Response:
    asset: Asset = current_app.extensions[ASSETS_KEY][name]
    headers = {**asset.headers, "ETag": f'"{asset.etag}"', "Vary": "Accept-Encoding"}
    if request.if_none_match.contains(asset.etag):
        return Response(b"", status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    return Response(body, status=200, headers=headers)


@route(
    bp,
    "GET",
    "/widget.js",
    role="public",
    response="text/javascript",
    other={304: None},
    summary="The embeddable widget.",
)
async def widget_js() -> Response:
    return serve_asset("widget.js")


@route(bp, "GET", "/", role="public", response="text/html", other={304: None}, summary="The demo page.")
async def demo_page() -> Response:
    return serve_asset("demo.html")


class WidgetTokenBody(BaseModel):
    """POST /v1/widget/tokens"""

    model_config = ConfigDict(extra="forbid")

    origin: str = Field(max_length=300, description="The site origin the token is for: https://site.example")
    ttl_seconds: int | None = Field(None, ge=1, description="Lifetime in seconds (default 600).")
    visitor: str | None = Field(
        None,
        pattern=VISITOR.pattern,
        description="The page visitor the token is for (the site's own id, to keep one across token refreshes); "
        "default: a new random id. Per-visitor limits count against it.",
    )


def issue_widget_token(
    who: str, origin: str, ttl_seconds: int | None, visitor: str | None = None
) -> dict[str, Any]:
    """Mint a widget token for tenant `who`, bound to `origin`. chatbot.api.auth decides `who` and gates the
    route (an API key with the chat role, or open access while no keys are configured)."""
    auth = services().settings.auth
    ttl = auth.widget_token_ttl_seconds if ttl_seconds is None else ttl_seconds
    if ttl > auth.widget_token_max_ttl_seconds:
        raise ValidationFailed(f"ttl_seconds is at most {auth.widget_token_max_ttl_seconds}.")
    token, claims = mint(signing_key(auth), tenant=who, origin=origin, ttl_seconds=ttl, visitor=visitor)
    return {
        "token": token,
        "tenant": claims.tenant,
        "origin": claims.origin,
        "visitor": claims.visitor,
        "expires_at": claims.exp,
        "expires_in": ttl,
    }


@route(
    bp,
    "POST",
    "/v1/widget/tokens",
    role="chat",
    body=WidgetTokenBody,
    response=WidgetToken,
    errors=(413, 422),
    summary="Mint a widget token for one site origin (an API key with the chat role, or open access).",
)
async def create_widget_token() -> Any:
    identity = g.get("identity")
    if identity is not None and identity.via == "widget":
        raise Forbidden("A widget token cannot mint widget tokens; mint them with an API key.")
    body: WidgetTokenBody = validate(WidgetTokenBody, await json_body())
    minted = issue_widget_token(tenant(), body.origin, body.ttl_seconds, body.visitor)
    return jsonify(minted), 200, {"Cache-Control": "no-store"}
