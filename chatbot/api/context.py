"""Per-request context: the typed services accessor, the caller's tenant and the transport-free Caller."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from quart import current_app, g

from chatbot.chat.caller import Caller

if TYPE_CHECKING:
    from chatbot.chat.service import ChatService
    from chatbot.wiring import Services

EXTENSION = "chatbot"
KEYRING = "chatbot.keyring"


def services() -> Services:
    return cast("Services", current_app.extensions[EXTENSION])


def chat_service() -> ChatService:
    return services().chat_service


def tenant() -> str:
    """The caller's tenant, decided by chatbot.api.auth.identify before the route ran."""
    found = g.get("tenant")
    if not isinstance(found, str):
        raise RuntimeError("tenant() called on a public route or before authentication")
    return found


def caller() -> Caller:
    """Who calls, for the chat service: the identity chatbot.api.auth bound to this request, and the client
    address the app's hooks found (server.trusted_proxies decides whether X-Forwarded-For is believed)."""
    identity = g.get("identity")
    if identity is None:
        raise RuntimeError("caller() called on a public route or before authentication")
    kind = {"api_key": "key", "widget": "widget"}.get(identity.via, "open")
    return Caller(
        tenant=identity.tenant,
        subject=identity.subject,
        kind=kind,  # type: ignore[arg-type]
        visitor=identity.visitor,
        address=g.get("client_address", ""),
    )
