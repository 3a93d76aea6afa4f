"""Widget tokens: short-lived, origin-bound credentials that a site's backend mints for its pages.

A token is `<payload>.<signature>`: the payload is base64url of the compact JSON {"tenant", "origin", "exp",
"vid"} and the signature is base64url of HMAC-SHA256(secret, payload). The page that embeds the widget holds only
this token, never an API key; the server checks the signature, the expiry and that the browser's Origin
header names the token's origin. `vid` is the visitor the token was minted for (one per page visitor, chosen
by the site or at random): per-visitor limits count against it (chat/quotas.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from chatbot.errors import BadRequest, Unauthorized
from chatbot.settings import AuthSettings

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 1024  # a real token is ~150 characters; anything longer is not ours
_TENANT = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")
# The only shape verify() looks further into: two base64url parts. Anything else (non-ASCII, padding, spaces,
# more dots) is refused before it reaches an encoder or a comparison that would raise on it.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,1000}\.[A-Za-z0-9_-]{1,100}", re.ASCII)
VISITOR = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_HOST = re.compile(r"[a-z0-9][a-z0-9._-]{0,252}|\[[0-9a-f:.]{2,45}\]", re.ASCII)


@dataclass(frozen=True, slots=True)
class WidgetToken:
    tenant: str
    origin: str
    exp: int  # unix seconds
    visitor: str = ""  # "" in a token minted before visitor ids


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` in lower case, as a browser's Origin header has it; else BadRequest.

    The host is ASCII (browsers send internationalised names in punycode): letters, digits, '.', '-', or an
    IPv6 literal in brackets. Whatever urlsplit refuses (an unclosed '[', NFKC tricks) is a BadRequest too.
    """
    shape = BadRequest(
        "An origin is scheme://host[:port], e.g. https://site.example (no path).", code="invalid_origin"
    )
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        raise shape from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise shape
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BadRequest("An origin has no query, fragment or credentials.", code="invalid_origin")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if not _HOST.fullmatch(host):
        raise shape
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64encode(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def mint(
    secret: bytes,
    *,
    tenant: str,
    origin: str,
    ttl_seconds: int,
    visitor: str | None = None,
    now: float | None = None,
) -> tuple[str, WidgetToken]:
    """A signed token for `tenant` bound to `origin` (normalised) and to `visitor` (a random id when None),
    valid for ttl_seconds; and its claims."""
    if not _TENANT.match(tenant):
        raise BadRequest("A tenant is 1-64 letters, digits, '.', '_' or '-'.", code="invalid_tenant")
    visitor = secrets.token_urlsafe(12) if visitor is None else visitor
    if not VISITOR.fullmatch(visitor):
        raise BadRequest("A visitor id is 1-64 letters, digits, '_' or '-'.", code="invalid_visitor")
    issued = int(time.time() if now is None else now)
    claims = WidgetToken(
        tenant=tenant, origin=normalize_origin(origin), exp=issued + ttl_seconds, visitor=visitor
    )
    body = json.dumps(
        {"tenant": tenant, "origin": claims.origin, "exp": claims.exp, "vid": visitor}, separators=(",", ":")
    )
    payload = _b64encode(body.encode())
    return f"{payload}.{_sign(secret, payload)}", claims


def verify(secret: bytes, token: str, *, now: float | None = None) -> WidgetToken:
    """The token's claims if its signature is ours and it has not expired; Unauthorized for anything else,
    whatever its characters or length."""
    invalid = Unauthorized("The widget token is not valid.")
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_SHAPE.fullmatch(token):
        raise invalid
    payload, signature = token.split(".")
    if not hmac.compare_digest(_sign(secret, payload), signature):
        raise invalid
    try:
        claims = json.loads(_b64decode(payload))
    except (ValueError, binascii.Error):
        raise invalid from None
    if not isinstance(claims, dict):
        raise invalid
    tenant, origin, exp = claims.get("tenant"), claims.get("origin"), claims.get("exp")
    if not isinstance(tenant, str) or not isinstance(origin, str) or type(exp) is not int:
        raise invalid
    visitor = claims.get("vid", "")
    if not isinstance(visitor, str) or (visitor and not VISITOR.fullmatch(visitor)):
        raise invalid
    if exp <= (time.time() if now is None else now):
        raise Unauthorized("The widget token has expired; ask the site for a new one.")
    return WidgetToken(tenant=tenant, origin=origin, exp=exp, visitor=visitor)


def signing_key(auth: AuthSettings) -> bytes:
    """The configured secret, or (dev only: prod settings refuse to start without one) a per-process key."""
    if auth.token_secret is not None:
        return auth.token_secret.get_secret_value().encode()
    return _process_key()


@functools.cache
def _process_key() -> bytes:
    log.warning(
        "auth.token_secret is not set: widget tokens are signed with a random per-process key and stop "
        "working at restart (set CHATBOT_AUTH__TOKEN_SECRET)"
    )
    return secrets.token_bytes(32)
