"""Who is calling: an API key (Authorization: Bearer / X-API-Key), a widget token (?token= or
X-Widget-Token, origin-bound), or nobody (open access, only while no API keys are configured).

Every HTTP request and websocket handshake to a route not declared public is identified once, before its route
runs; the identity decides the tenant (the X-Chatbot-Tenant header is honoured only in open access and for
admin keys) and the role the route declares (chatbot.api.routes.route) is checked. An endpoint without a
declaration is refused: there is no default role. Keys are stored as sha256 digests, compared by digest only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from quart import g

from chatbot.api.routes import declared
from chatbot.errors import BadRequest, Forbidden, OriginNotAllowed, Unauthorized
from chatbot.settings import ApiKeySpec, Settings
from chatbot.widget_tokens import normalize_origin, signing_key, verify

log = logging.getLogger(__name__)

ALL_ROLES = frozenset({"chat", "ingest", "admin"})
TENANT_HEADER = "X-Chatbot-Tenant"
_TENANT = re.compile(r"[A-Za-z0-9_\-.]{1,64}")


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str
    roles: frozenset[str]
    via: str = "open"  # "open", "api_key" or "widget"
    key_id: str | None = None
    origin: str | None = None  # a widget token's origin (allowed for its connection)
    visitor: str = ""  # a widget token's visitor id

    @property
    def subject(self) -> str:
        """What requests_per_minute counts against: the key, the widget visitor (its tenant, origin and visitor
        id: one visitor's requests never count against another's), or the tenant."""
        if self.key_id is not None:
            return f"key:{self.key_id}"
        if self.origin is not None:
            return f"widget:{self.tenant}:{self.origin}:{self.visitor}"
        return f"tenant:{self.tenant}"


def new_api_key() -> tuple[str, str]:
    """A fresh key and its sha256 digest (the digest goes into CHATBOT_AUTH__API_KEYS)."""
    key = "cb_" + secrets.token_urlsafe(32)
    return key, digest(key)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, specs: list[ApiKeySpec]) -> None:
        self._by_digest = {spec.sha256: spec for spec in specs}

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    def lookup(self, key: str) -> ApiKeySpec | None:
        return self._by_digest.get(digest(key))


class Lookup(Protocol):
    """What identify() reads from headers and query arguments (werkzeug's Headers and MultiDict, or a dict)."""

    def get(self, key: str, /) -> str | None: ...


def presented_key(headers: Lookup) -> str | None:
    auth = headers.get("Authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("X-API-Key") or None


def identify(settings: Settings, keyring: KeyRing, headers: Lookup, args: Lookup) -> Identity:
    """The caller's identity, or Unauthorized / OriginNotAllowed / BadRequest."""
    asked_tenant = headers.get(TENANT_HEADER) or args.get("tenant")
    key = presented_key(headers) if keyring.enabled else None  # open access: clients' keys mean nothing
    if key is not None:
        spec = keyring.lookup(key)
        if spec is None:
            raise Unauthorized("The API key is not valid.")
        roles = frozenset(spec.roles) | (ALL_ROLES if "admin" in spec.roles else frozenset())
        tenant = asked_tenant if asked_tenant and "admin" in roles else spec.tenant
        return Identity(tenant=_checked(tenant or spec.tenant), roles=roles, via="api_key", key_id=spec.id)
    token = args.get("token")
    if token is None:
        token = headers.get("X-Widget-Token")
    if token is not None:
        claims = verify(signing_key(settings.auth), token)
        try:
            origin = normalize_origin(headers.get("Origin") or "")
        except BadRequest:
            origin = ""
        if origin != claims.origin:
            raise OriginNotAllowed("This widget token was issued for another origin.")
        return Identity(
            tenant=claims.tenant,
            roles=frozenset({"chat"}),
            via="widget",
            origin=claims.origin,
            visitor=claims.visitor,
        )
    if keyring.enabled:
        raise Unauthorized()
    return Identity(tenant=_checked(asked_tenant or settings.default_tenant), roles=ALL_ROLES)


def authorize(identity: Identity, endpoint: str | None) -> None:
    """Forbidden unless `endpoint` is declared and `identity` holds its role (public routes admit anyone).
    An endpoint the app has no declaration for is refused, whatever the credential."""
    decl = declared(endpoint)
    if decl is None:
        raise Forbidden("This endpoint declares no role; it is refused.")
    if not decl.public and decl.role not in identity.roles:
        raise Forbidden(f"This credential lacks the '{decl.role}' role.")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104  # compared, never bound


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The Host values this server answers (None: any). server.allowed_hosts when set; else in dev the loopback
    names and the configured server.host (a browser page on another name cannot rebind to us), in prod any."""
    server = settings.server
    if server.allowed_hosts:
        listed = frozenset(h.strip().lower() for h in server.allowed_hosts)
        return None if "*" in listed else listed
    if settings.env == "prod":
        return None
    host = server.host.strip().lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 bind address, as it appears in a Host header
    return frozenset(LOOPBACK_HOSTS) | ({host} - _WILDCARD_BINDS)


def check_host(host: str | None, allowed: frozenset[str] | None) -> None:
    """BadRequest host_not_allowed unless `host` (a Host header: name or name:port) is allowed. An entry
    without a port allows its name on any port; one with a port allows only that port."""
    if allowed is None:
        return
    value = (host or "").strip().lower()
    name, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or (name.startswith("[") != name.endswith("]")):
        name = value  # no port (or an IPv6 literal's colons)
    if value and (name in allowed or value in allowed):
        return
    raise BadRequest("This server does not answer for that Host.", code="host_not_allowed")


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: `peer` (the socket's), or, when `peer` is a trusted proxy, the last address of
    X-Forwarded-For that is not one (proxies append: anything left of a trusted hop may be forged)."""
    if not trusted or not forwarded_for or not _in_networks(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in_networks(hop, trusted):
            return hop[:64]
    return peer


def _in_networks(address: str, networks: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def bind(identity: Identity) -> None:
    """Make `identity` the current request's (tenant() reads it)."""
    g.identity = identity
    g.tenant = identity.tenant


def _checked(tenant: str) -> str:
    if not _TENANT.fullmatch(tenant):
        raise BadRequest("A tenant is 1-64 letters, digits, '.', '_' or '-'.", code="invalid_tenant")
    return tenant
