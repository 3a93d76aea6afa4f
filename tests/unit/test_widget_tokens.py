"""Widget tokens: minting, verification, origin normalisation, the signing key and the prod secret rule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from pydantic import SecretStr, ValidationError

from chatbot.errors import BadRequest, Unauthorized
from chatbot.settings import AuthSettings
from chatbot.widget_tokens import WidgetToken, mint, normalize_origin, signing_key, verify
from tests.conftest import make_settings

SECRET = b"k" * 32
NOW = 1_800_000_000.0


def signed(payload: bytes, secret: bytes = SECRET) -> str:
    """A token with any payload, correctly signed (to test what verify does with odd claims)."""
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return body + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class TestMintAndVerify:
    def test_round_trip_returns_the_claims(self) -> None:
        """A minted token verifies to its tenant, normalised origin and expiry."""
        token, claims = mint(
            SECRET, tenant="acme", origin="https://Site.Example/", ttl_seconds=600, visitor="v-1", now=NOW
        )
        assert claims == WidgetToken(
            tenant="acme", origin="https://site.example", exp=int(NOW) + 600, visitor="v-1"
        )
        assert verify(SECRET, token, now=NOW + 599) == claims

    def test_each_token_gets_its_own_visitor_unless_the_site_names_one(self) -> None:
        """Without a visitor id every token is a new visitor (random); with one, the site keeps its visitor."""
        ids = {
            mint(SECRET, tenant="acme", origin="https://site.example", ttl_seconds=60)[1].visitor
            for _ in range(5)
        }
        assert len(ids) == 5
        assert all(ids)
        _, claims = mint(SECRET, tenant="acme", origin="https://site.example", ttl_seconds=60, visitor="abc")
        assert claims.visitor == "abc"

    @pytest.mark.parametrize("visitor", ["", "a" * 65, "a b", "é", "a.b", "a\x00"])
    def test_a_malformed_visitor_id_is_refused(self, visitor: str) -> None:
        """A visitor id is 1-64 of [A-Za-z0-9_-]: anything else is a 400 at minting and a 401 in a token."""
        with pytest.raises(BadRequest):
            mint(SECRET, tenant="acme", origin="https://site.example", ttl_seconds=60, visitor=visitor)
        if visitor:
            claims = {
                "tenant": "acme",
                "origin": "https://site.example",
                "exp": int(NOW) + 60,
                "vid": visitor,
            }
            with pytest.raises(Unauthorized):
                verify(SECRET, signed(json.dumps(claims).encode()), now=NOW)

    def test_a_token_without_a_visitor_id_still_verifies(self) -> None:
        """A token minted before visitor ids (no vid claim) verifies, with visitor ''."""
        claims = {"tenant": "acme", "origin": "https://site.example", "exp": int(NOW) + 60}
        assert verify(SECRET, signed(json.dumps(claims).encode()), now=NOW).visitor == ""

    def test_payload_is_compact_json_of_four_claims(self) -> None:
        """The payload is base64url of {"tenant","origin","exp","vid"} with no padding, then '.', then the MAC."""
        token, _ = mint(
            SECRET, tenant="acme", origin="https://site.example", ttl_seconds=60, visitor="v", now=NOW
        )
        payload, mac = token.split(".")
        assert "=" not in token
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        assert decoded == b'{"tenant":"acme","origin":"https://site.example","exp":1800000060,"vid":"v"}'
        assert len(base64.urlsafe_b64decode(mac + "=")) == 32

    def test_expired_token_is_refused(self) -> None:
        """At or after exp the token is unauthorized, with a message that says it expired."""
        token, _ = mint(SECRET, tenant="acme", origin="https://site.example", ttl_seconds=10, now=NOW)
        with pytest.raises(Unauthorized, match="expired"):
            verify(SECRET, token, now=NOW + 10)

    def test_expiry_is_checked_against_the_clock(self) -> None:
        """Without `now`, verify uses the current time."""
        origin = "https://site.example"
        token, _ = mint(SECRET, tenant="acme", origin=origin, ttl_seconds=1, now=time.time() - 5)
        with pytest.raises(Unauthorized, match="expired"):
            verify(SECRET, token)

    def test_another_secret_is_refused(self) -> None:
        """A token signed with another key is not valid."""
        token, _ = mint(b"x" * 32, tenant="acme", origin="https://site.example", ttl_seconds=10, now=NOW)
        with pytest.raises(Unauthorized, match="not valid"):
            verify(SECRET, token, now=NOW)

    def test_tampered_payload_is_refused(self) -> None:
        """Changing the tenant in the payload breaks the signature."""
        token, _ = mint(SECRET, tenant="acme", origin="https://site.example", ttl_seconds=10, now=NOW)
        _, mac = token.split(".")
        forged = base64.urlsafe_b64encode(
            json.dumps({"tenant": "other", "origin": "https://site.example", "exp": int(NOW) + 10}).encode()
        )
        with pytest.raises(Unauthorized):
            verify(SECRET, forged.rstrip(b"=").decode() + "." + mac, now=NOW)

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "abc",
            "a.b.c",
            "!!!.###",
            "x" * 2000 + ".y",
            signed(b"[1, 2]"),
            signed(b"not json"),
            signed(b'{"tenant": "a", "origin": "https://s.example", "exp": "soon"}'),
            signed(b'{"tenant": "a", "origin": "https://s.example", "exp": true}'),
            signed(b'{"tenant": 1, "origin": "https://s.example", "exp": 1900000000}'),
        ],
    )
    def test_malformed_tokens_are_refused(self, token: str) -> None:
        """Garbage, oversized tokens and signed payloads with the wrong shape are all unauthorized."""
        with pytest.raises(Unauthorized, match="not valid"):
            verify(SECRET, token, now=NOW)

    def test_invalid_tenant_is_not_minted(self) -> None:
        """A tenant outside the tenant alphabet cannot be put in a token."""
        with pytest.raises(BadRequest):
            mint(SECRET, tenant="a b", origin="https://site.example", ttl_seconds=10)


class TestNormalizeOrigin:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("https://Site.Example", "https://site.example"),
            ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
            ("https://site.example:443", "https://site.example"),
            ("http://site.example:80", "http://site.example"),
            ("https://site.example:8443", "https://site.example:8443"),
            ("http://[::1]:8000", "http://[::1]:8000"),
        ],
    )
    def test_origins_normalise_as_browsers_send_them(self, given: str, expected: str) -> None:
        """Lower-case host, no default port, no trailing slash."""
        assert normalize_origin(given) == expected

    @pytest.mark.parametrize(
        "given",
        [
            "",
            "null",
            "site.example",
            "ftp://site.example",
            "https://site.example/page",
            "https://site.example?q=1",
            "https://user@site.example",
            "https://site.example:99999",
            "javascript:alert(1)",
        ],
    )
    def test_non_origins_are_refused(self, given: str) -> None:
        """Anything but scheme://host[:port] over http(s) is invalid_origin."""
        with pytest.raises(BadRequest) as caught:
            normalize_origin(given)
        assert caught.value.code == "invalid_origin"


class TestSigningKey:
    def test_configured_secret_is_the_key(self) -> None:
        """auth.token_secret is used as given."""
        assert signing_key(AuthSettings.model_validate({"token_secret": SecretStr("s" * 40)})) == b"s" * 40

    def test_unset_secret_gives_one_random_key_per_process(self) -> None:
        """Without a secret (dev) every call in the process gets the same random 32-byte key."""
        first = signing_key(AuthSettings.model_validate({}))
        assert first == signing_key(AuthSettings.model_validate({}))
        assert len(first) == 32


class TestProdSecret:
    @pytest.mark.parametrize("secret", [None, "changeme", "short", "secret" + " " * 40])
    def test_prod_refuses_a_missing_or_weak_secret(self, secret: str | None) -> None:
        """env=prod without a real token secret fails at start-up, naming the variable."""
        with pytest.raises(ValidationError, match="CHATBOT_AUTH__TOKEN_SECRET"):
            make_settings(env="prod", auth={"token_secret": secret})

    def test_prod_accepts_a_long_random_secret(self) -> None:
        """A 48-character random secret satisfies the token secret rule."""
        problems: list[str] = []
        try:
            make_settings(env="prod", auth={"token_secret": "Zq3" * 16})
        except ValidationError as exc:  # other prod rules may apply; this one must not
            problems = [str(e["msg"]) for e in exc.errors()]
        assert not [p for p in problems if "TOKEN_SECRET" in p]

    def test_dev_needs_no_secret(self) -> None:
        """In dev the secret may be unset."""
        assert make_settings(auth={}).auth.token_secret is None
