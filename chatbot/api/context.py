"""Per-request context: the typed services accessor and the caller's tenant."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

from quart import current_app, g, has_request_context, has_websocket_context, request, websocket

from chatbot.errors import BadRequest

if TYPE_CHECKING:
    from chatbot.services import Services

EXTENSION = "chatbot"
TENANT_HEADER = "X-Chatbot-Tenant"
_TENANT = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


def services() -> Services:
    return cast("Services", current_app.extensions[EXTENSION])


def tenant() -> str:
    """The caller's tenant: set by authentication when keys are configured, else the X-Chatbot-Tenant
    header (or ?tenant= on a websocket URL), else the default tenant."""
    found = g.get("tenant")
    if isinstance(found, str):
        return found
    asked: str | None = None
    if has_request_context():
        asked = request.headers.get(TENANT_HEADER) or request.args.get("tenant")
    elif has_websocket_context():
        asked = websocket.headers.get(TENANT_HEADER) or websocket.args.get("tenant")
    if asked is None:
        asked = services().settings.default_tenant
    if not _TENANT.match(asked):
        raise BadRequest("A tenant is 1-64 letters, digits, '.', '_' or '-'.", code="invalid_tenant")
    g.tenant = asked
    return asked
