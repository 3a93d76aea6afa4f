"""Per-request context: the typed services accessor and the caller's tenant."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from quart import current_app, g

if TYPE_CHECKING:
    from chatbot.wiring import Services

EXTENSION = "chatbot"
KEYRING = "chatbot.keyring"


def services() -> Services:
    return cast("Services", current_app.extensions[EXTENSION])


def tenant() -> str:
    """The caller's tenant, decided by chatbot.api.auth.identify before the route ran."""
    found = g.get("tenant")
    if not isinstance(found, str):
        raise RuntimeError("tenant() called on a public route or before authentication")
    return found
