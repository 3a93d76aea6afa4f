"""Settings of credentials: API keys, their roles and tenants, and the secret that signs widget tokens.

Part of the one settings tree in chatbot/settings.py, which re-exports every name here: a separate module
because these change with authentication (api/auth.py), not with serving or storage.
Import from chatbot.settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "placeholder", "dev", "test", "xxx"}
)
MIN_SECRET_CHARS = 32


Role = Literal["chat", "ingest", "admin"]


class ApiKeySpec(BaseModel):
    """One API key, stored as the sha256 of the key (make one with `python -m chatbot keys new`)."""

    id: str = Field(min_length=1, max_length=64, description="A name for the key, shown in logs and metrics.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the key; the key itself is never stored."
    )
    tenant: str = Field(
        pattern=r"^[A-Za-z0-9_\-.]{1,64}$", description="The tenant whose documents the key sees."
    )
    roles: list[Role] = Field(
        default_factory=lambda: list[Role](["chat"]), description="chat, ingest and/or admin."
    )


class AuthSettings(BaseModel):
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        description='API keys as JSON, e.g. [{"id":"site","sha256":"...","tenant":"acme","roles":["chat"]}]. '
        "Empty: open access (refused in prod).",
    )
    token_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key that signs widget tokens (32+ characters). Unset in dev: a random key "
        "per process (tokens die with it); required in prod.",
    )
    widget_token_ttl_seconds: int = Field(
        600, ge=1, description="Lifetime of a widget token minted without ttl_seconds."
    )
    widget_token_max_ttl_seconds: int = Field(
        86_400, ge=1, description="Longest lifetime a widget token may be minted with (longer: 422)."
    )
