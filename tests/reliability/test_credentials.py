"""Malformed credentials (odd bytes and encodings, overlong, broken structure) are a 401 with a JSON error code
on every transport: never a 500, never a traceback in the log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.api.auth import KeyRing, identify, new_api_key
from chatbot.errors import BadRequest, OriginNotAllowed, Unauthorized
from chatbot.providers.registry import Providers
from chatbot.settings import Settings
from chatbot.stores.base import VectorStore
from chatbot.widget_tokens import mint, normalize_origin, verify
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services

SECRET = "s" * 40
ORIGIN = "https://site.example"

# Credentials a stranger can send, as raw header bytes (h11 lets through any visible byte and obs-text 0x80-0xFF)
HOSTILE: dict[str, bytes] = {
    "non_ascii_utf8": "tökén.sïgnätürë".encode(),
    "latin1_bytes": b"\xe9\xff\xa0abc.def",
    "emoji": "🔑🔑.🔑".encode(),
    "fullwidth_dot": "abc\uff0edef".encode(),
    "overlong": b"a" * 6000 + b"." + b"b" * 6000,
    "many_dots": b"a.b.c.d",
    "only_dot": b".",
    "empty_parts": b"..",
    "bad_base64": b"!!!!.????",
    "padding_only": b"====.====",
    "json_array": base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=") + b".x",
    "percent_escapes": b"%00%ff%c3%28.%e2%82",
    "spaces_inside": b"abc def . ghi",
}

# What ?token= may carry once the query string is percent-decoded (invalid UTF-8, NUL, surrogate halves...)
HOSTILE_QUERY: dict[str, str] = {
    "invalid_utf8": "%ff%fe.%c3%28",
    "nul": "abc%00.def",
    "surrogate": "%ed%a0%80.abc",
    "non_ascii": quote("tökén.sïg"),
    "overlong": "a" * 900 + "." + "b" * 900,
}


def _settings() -> Settings:
    _, sha256 = new_api_key()
    return make_settings(
        auth={
            "api_keys": [{"id": "site", "sha256": sha256, "tenant": "acme", "roles": ["chat"]}],
            "token_secret": SECRET,
        }
    )


class TestVerify:
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
    def test_any_text_is_a_token_or_unauthorized(self, token: str) -> None:
        """verify() returns claims or raises Unauthorized for any string (no ValueError, TypeError, ...)."""
        with pytest.raises(Unauthorized):
            verify(SECRET.encode(), token)

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=1, max_size=40))
    def test_a_signed_token_with_a_non_ascii_tail_is_unauthorized(self, tail: str) -> None:
        """A real token with anything appended is Unauthorized (the signature compare never sees non-ASCII)."""
        token, _ = mint(SECRET.encode(), tenant="acme", origin=ORIGIN, ttl_seconds=60)
        with pytest.raises(Unauthorized):
            verify(SECRET.encode(), token + tail)

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=120))
    def test_any_origin_normalises_or_is_bad_request(self, origin: str) -> None:
        """normalize_origin() returns an origin or raises BadRequest for any string (urlsplit's errors too)."""
        try:
            normalized = normalize_origin(origin)
        except BadRequest:
            return
        assert re.fullmatch(r"https?://[a-z0-9._\-\[\]:]+", normalized, re.ASCII), normalized

    @pytest.mark.parametrize(
        "origin", ["http://[", "http://[::1", "http://a]b", "https://x\uff03y", "http://\x00"]
    )
    def test_unparseable_origins_are_bad_request(self, origin: str) -> None:
        """Origins that urlsplit itself refuses are BadRequest(invalid_origin), not ValueError."""
        with pytest.raises(BadRequest):
            normalize_origin(origin)


class TestIdentify:
    @settings(max_examples=300, deadline=None)
    @given(
        where=st.sampled_from(["Authorization", "X-API-Key", "X-Widget-Token", "token"]),
        value=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    )
    def test_any_credential_is_unauthorized(self, where: str, value: str) -> None:
        """Any value in any credential slot is Unauthorized (with keys configured), whatever its characters."""
        settings_ = _settings()
        headers: dict[str, str] = {"Origin": ORIGIN}
        args: dict[str, str] = {}
        if where == "token":
            args["token"] = value
        elif where == "Authorization":
            headers[where] = "Bearer " + value
        else:
            headers[where] = value
        if not value.strip() and where != "token":
            return  # an empty credential is no credential: Unauthorized too, covered below
        with pytest.raises(Unauthorized):
            identify(settings_, KeyRing(settings_.auth.api_keys), headers, args)

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
    def test_a_valid_token_with_any_origin_is_refused_cleanly(self, origin: str) -> None:
        """A valid token from a hostile Origin header is OriginNotAllowed (403), never an unexpected error."""
        settings_ = _settings()
        token, _ = mint(SECRET.encode(), tenant="acme", origin=ORIGIN, ttl_seconds=60)
        try:
            identity = identify(settings_, KeyRing([]), {"Origin": origin}, {"token": token})
        except OriginNotAllowed:
            return
        assert identity.origin == ORIGIN


@dataclass
class Reply:
    status: int
    body: Any


async def raw_exchange(url: str, request: bytes) -> Reply:
    """Send raw request bytes, read the whole response (the server closes: Connection: close)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = body
    return Reply(status, parsed)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def http_request(target: str, header: bytes | None) -> bytes:
    body = b'{"message": "hi"}'
    lines = [
        f"POST {target} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Origin: " + ORIGIN.encode(),
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
        b"Connection: close",
    ]
    if header is not None:
        lines.append(header)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def ws_request(target: str, header: bytes | None) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Origin: " + ORIGIN.encode(),
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version: 13",
    ]
    if header is not None:
        lines.append(header)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.fixture
async def keyed(
    offline_providers: Providers, small_store: VectorStore, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[str]:
    """The app with an API key and a widget secret configured; fails the test if anything logged ERROR."""
    caplog.set_level(logging.WARNING)
    async with serve_services(_settings(), offline_providers, small_store) as (url, _):
        yield url
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


def _slots(value: bytes) -> list[tuple[str, bytes | None, str]]:
    """(name, header line, query) for every place a credential can be presented."""
    return [
        ("bearer", b"Authorization: Bearer " + value, ""),
        ("x_api_key", b"X-API-Key: " + value, ""),
        ("x_widget_token", b"X-Widget-Token: " + value, ""),
        ("authorization_raw", b"Authorization: " + value, ""),
    ]


class TestServed:
    @pytest.mark.parametrize("name", sorted(HOSTILE))
    async def test_hostile_header_credentials_are_401_json(self, keyed: str, name: str) -> None:
        """Each hostile credential in each header slot: HTTP 401 and websocket handshake 401, JSON code."""
        for slot, header, _ in _slots(HOSTILE[name]):
            for transport, request in (
                ("http", http_request("/v1/chat", header)),
                ("ws", ws_request("/v1/ws", header)),
            ):
                reply = await raw_exchange(keyed, request)
                assert reply.status == 401, (slot, transport, reply)
                assert reply.body["error"]["code"] == "unauthorized", (slot, transport, reply)

    @pytest.mark.parametrize("name", sorted(HOSTILE_QUERY))
    async def test_hostile_query_tokens_are_401_json(self, keyed: str, name: str) -> None:
        """A hostile ?token= (decoded to odd characters): HTTP 401 and websocket handshake 401, JSON code."""
        query = "?token=" + HOSTILE_QUERY[name]
        for transport, request in (
            ("http", http_request("/v1/chat" + query, None)),
            ("ws", ws_request("/v1/ws" + query, None)),
        ):
            reply = await raw_exchange(keyed, request)
            assert reply.status == 401, (transport, reply)
            assert reply.body["error"]["code"] == "unauthorized", (transport, reply)
