"""Log redaction: provider keys echoed in upstream error bodies, our own keys in free text, and pieces (heads,
tails) of every configured secret never reach a log line; ids and ordinary text stay readable."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.api.auth import new_api_key
from chatbot.errors import UpstreamError
from chatbot.ops.observability import make_handler
from chatbot.ops.redaction import PARTIAL_CHARS, REDACTED, Redactor, known_secrets, redact
from chatbot.providers.cohere_models import CohereEmbedder, build_cohere_client
from chatbot.providers.openai_models import OpenAIEmbedder, build_openai_client
from chatbot.settings import CohereSettings, OpenAISettings
from tests.conftest import make_settings
from tests.fakes.httpserver import Connection, Request
from tests.fakes.upstream import FakeUpstream

OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
COHERE_KEY = "Zx8cVb2nMq4wEr6tYu9iOp1aSd3fGh5jKl7zXc0v"  # 40 mixed-case alphanumerics
AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # 32 hex
OUR_KEY = new_api_key()[0]
ODD_SECRET = "correct horse battery staple 42"  # no known shape: only the by-value net can catch it


def pieces_of(secret: str, size: int = PARTIAL_CHARS) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


class TestShapes:
    @pytest.mark.parametrize(
        ("text", "secret"),
        [
            (
                "Error code: 401 - {'error': {'message': 'Incorrect API key provided: sk-proj-Ab3d********"
                "**********************4z. You can find your API key at https://platform.openai.com/account"
                "/api-keys.', 'type': 'invalid_request_error'}}",
                "Ab3d****",
            ),
            (f"openai: HTTP 401: Incorrect API key provided: {OPENAI_KEY}.", OPENAI_KEY[8:24]),
            ("anthropic said: invalid x-api-key sk-ant-api03-" + "aB1" * 30 + "-xYz_AA", "aB1aB1aB1"),
            (f"Access denied due to invalid subscription key {AZURE_KEY}. Make sure", AZURE_KEY),
            (f"Incorrect API key provided: {AZURE_KEY}", AZURE_KEY),
            (f'{{"message": "invalid api token: {COHERE_KEY}"}}', COHERE_KEY),
            (f"retrying with {COHERE_KEY} after 1s", COHERE_KEY),
            (f"{{'headers': {{'authorization': '{COHERE_KEY}'}}}}", COHERE_KEY),
            (f"client sent {OUR_KEY} on /v1/chat", OUR_KEY[3:]),
            (f"client sent {OUR_KEY[:14]}", OUR_KEY[3:14]),
            (f"X-API-Key was {OUR_KEY}", OUR_KEY[3:]),
            ("key sk-...wXyZ1234 was revoked", "wXyZ1234"),
            (f"secret: {AZURE_KEY[:20]}", AZURE_KEY[:20]),
        ],
    )
    def test_key_shapes_in_free_text_are_masked(self, text: str, secret: str) -> None:
        """Provider keys (whole, masked echoes, cut), 32-hex after a key word, 40-char keys and cb_ keys."""
        masked = redact(text)
        assert secret not in masked, masked
        assert REDACTED in masked

    @pytest.mark.parametrize(
        "text",
        [
            f"request {uuid.uuid4().hex} failed: upstream_timeout",
            f"tenant acme exhausted its token budget; ending answer msg_{uuid.uuid4().hex}",
            f"conversation {uuid.uuid4().hex} has 12 messages",
            "ingested guide/websocket.md version 0f1e2d3c4b5a6978 (14 chunks)",
            "answer msg_0f3a done in 120 ms: completion_tokens=42 code=upstream_timeout url=http://qdrant:6333",
            "loading /work/models/all-MiniLM-L6-v2/onnx/model_quantized.onnx",
            "cohere stream: finished with TIMEOUT",
            "the key is in the settings table; see README",
            "cb_handler failed",
        ],
    )
    def test_ids_and_ordinary_text_are_untouched(self, text: str) -> None:
        """Request, conversation and message ids (32 hex), versions, paths and prose pass unchanged."""
        assert redact(text) == text


class TestKnownValues:
    @pytest.fixture
    def redactor(self) -> Redactor:
        return Redactor([ODD_SECRET, OPENAI_KEY, COHERE_KEY, "short"])

    @pytest.mark.parametrize(
        "text",
        [
            f"config dump: token_secret is {ODD_SECRET!r}",
            f"body cut at 300 chars: ...{ODD_SECRET[:11]}",
            f"key ending in {ODD_SECRET[-9:]}",
            f"upstream echoed {OPENAI_KEY.upper()} and {OPENAI_KEY[-10:]}",
            f"url-ish {COHERE_KEY[5:20]}/x",
        ],
    )
    def test_registered_secrets_are_masked_whole_or_in_part(self, redactor: Redactor, text: str) -> None:
        """Any run of PARTIAL_CHARS characters of a registered secret is masked, whatever its shape."""
        masked = redactor(text)
        for secret in (ODD_SECRET, OPENAI_KEY, COHERE_KEY):
            leaked = [p for p in pieces_of(secret) if p in masked]
            assert not leaked, (masked, leaked)

    def test_short_secrets_are_not_registered(self, redactor: Redactor) -> None:
        """A secret under PARTIAL_CHARS characters is ignored (masking it would mask ordinary words)."""
        assert redactor("a short answer") == "a short answer"

    @settings(max_examples=200, deadline=None)
    @given(
        secret=st.text(alphabet="abcdefXYZ0123456789-_ ", min_size=PARTIAL_CHARS, max_size=64),
        around=st.tuples(st.text(max_size=40), st.text(max_size=40)),
        data=st.data(),
    )
    def test_any_piece_of_a_secret_in_any_text_is_masked(
        self, secret: str, around: tuple[str, str], data: Any
    ) -> None:
        """For any registered secret and any slice of PARTIAL_CHARS+ characters of it, the slice is gone."""
        start = data.draw(st.integers(0, len(secret) - PARTIAL_CHARS))
        end = data.draw(st.integers(start + PARTIAL_CHARS, len(secret)))
        piece = secret[start:end]
        masked = Redactor([secret])(around[0] + piece + around[1])
        assert piece not in masked

    def test_every_configured_secret_is_known(self) -> None:
        """known_secrets() finds the provider keys, Qdrant key, widget secret and API key digests."""
        _, digest = new_api_key()
        settings_ = make_settings(
            openai={"api_key": OPENAI_KEY},
            cohere={"api_key": COHERE_KEY},
            qdrant={"api_key": "qdrant-secret-1234"},
            auth={
                "token_secret": ODD_SECRET,
                "api_keys": [{"id": "site", "sha256": digest, "tenant": "acme", "roles": ["chat"]}],
            },
        )
        assert set(known_secrets(settings_)) >= {
            OPENAI_KEY,
            COHERE_KEY,
            "qdrant-secret-1234",
            ODD_SECRET,
            digest,
        }


class EchoingKeyUpstream(FakeUpstream):
    """An upstream that refuses every request with 401 and echoes the presented key in full in its body."""

    async def _handle(self, conn: Connection, request: Request) -> None:
        presented = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if request.path.startswith("/v1/"):
            body: dict[str, Any] = {
                "error": {
                    "message": f"Incorrect API key provided: {presented}.",
                    "type": "invalid_request_error",
                }
            }
        else:
            body = {"message": f"invalid api token {presented}"}
        await conn.send_json(401, body)


class TestUpstreamEchoes:
    @pytest.mark.parametrize("vendor", ["openai", "cohere"])
    async def test_a_key_echoed_by_an_upstream_error_is_masked(self, vendor: str) -> None:
        """The real SDK gets a 401 whose body echoes our (shapeless) key: the warning line holds no piece of it."""
        key = "Zq7-not-a-known-shape-" + uuid.uuid4().hex[:12]
        buffer = io.StringIO()
        logger = logging.getLogger("chatbot.providers")
        handler = make_handler(
            json=True, stream=buffer, secrets=known_secrets(make_settings(**{vendor: {"api_key": key}}))
        )
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            async with EchoingKeyUpstream() as fake:
                if vendor == "openai":
                    oa = OpenAISettings(
                        api_key=key, base_url=fake.openai_base_url, timeout=5.0, max_retries=0
                    )
                    client: Any = build_openai_client(oa)
                    embedder: Any = OpenAIEmbedder(client, oa)
                else:
                    co = CohereSettings(
                        api_key=key, base_url=fake.cohere_base_url, timeout=5.0, max_retries=0
                    )
                    client = build_cohere_client(co)
                    embedder = CohereEmbedder(client, co)
                try:
                    with pytest.raises(UpstreamError):
                        await embedder.embed(["hello"], kind="query")
                finally:
                    if vendor == "openai":
                        await client.close()
                    else:
                        await client.__aexit__(None, None, None)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
        assert any("401" in line["msg"] for line in lines), lines
        out = buffer.getvalue()
        assert not [p for p in pieces_of(key) if p in out], out
