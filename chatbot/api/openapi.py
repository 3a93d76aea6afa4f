"""GET /openapi.json: the HTTP API as an OpenAPI 3.1 document, assembled from the routes' own declarations.

Each route states its method, path, role, request model, response model(s) and errors where it is defined
(chatbot.api.routes.route); this module only turns the app's route table into the document. Request bodies
are the JSON schemas of the models the routes validate with, responses those of chatbot.api.responses, so
the document cannot drift from what the server accepts and answers (tests/reliability/test_schemathesis.py
checks real responses against it). A route's role decides its security, its tenant header and its
401/403/429; `x-role` and `x-admission` carry the declaration itself.

The websocket (/v1/ws) is outside OpenAPI's reach; its frames are described under `x-websocket`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, current_app

from chatbot.api.responses import AnthropicErrorBody, ErrorBody, OpenAIErrorBody, OpenAPIDocument
from chatbot.api.routes import ROUTES, EventStream, Param, Route, route
from chatbot.api.wire import AskFrame, PingFrame, ResumeFrame, StopFrame

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
DOCUMENT = "chatbot.openapi"  # app.extensions key: the document, built once per app
TENANT_PATTERN = r"^([A-Za-z0-9_\-.]{1,64})?$"  # empty: as if absent
_PATH_ARGUMENT = re.compile(r"<(?:[a-z]+:)?([A-Za-z_]+)>")
_ERROR_TEXT = {
    400: "A malformed request (invalid_json, empty_message, invalid_tenant, host_not_allowed, ...).",
    401: "An API key is required (or the key or widget token is not valid).",
    403: "The credential lacks the role this route declares (forbidden, origin_not_allowed).",
    404: "Unknown id (or another tenant's).",
    409: "The request conflicts with the current state.",
    413: "Body, message or file larger than the limits allow.",
    415: "Unsupported file type.",
    422: "The body does not match the schema (validation_error) or the file cannot be read.",
    429: "busy, rate_limited or quota_exceeded; see Retry-After.",
    502: "The model provider failed (upstream_unavailable, upstream_bad_response, upstream_auth).",
    503: "Rate limited upstream, vector store unavailable, or shutting down; see Retry-After.",
    504: "A stage ran past its deadline (embed_timeout, retrieve_timeout, first_token_timeout, ...).",
}
CREDENTIAL_ERRORS = (400, 401, 403, 429)  # tenant header, credential, role, per-caller rate limit
_ERROR_BODIES: dict[str, type[BaseModel]] = {
    "native": ErrorBody,
    "openai": OpenAIErrorBody,
    "anthropic": AnthropicErrorBody,
}
ANY_ROUTE_ERRORS = (400,)  # host_not_allowed


def openapi_path(rule: str) -> str:
    """Quart's /v1/chat/<message_id>/stop as OpenAPI's /v1/chat/{message_id}/stop."""
    return _PATH_ARGUMENT.sub(r"{\1}", rule)


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    """Add `model` (and the models it uses) to components; return a $ref to it."""
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": REF.format(model=model.__name__)}


def _param(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "required": p.where == "path",
        "schema": dict(p.schema),
        "description": p.description,
    }


def _sse(stream: EventStream) -> dict[str, Any]:
    """A text/event-stream whose schema describes one event (as schemathesis and OpenAPI 3.2 read it)."""
    properties: dict[str, Any] = {"data": {"type": "string", "description": stream.description}}
    if stream.events is not None:
        properties["event"] = {"enum": list(stream.events)}
    if stream.with_ids:
        properties["id"] = {"type": "string", "pattern": "^[0-9]+$", "description": "The event's seq."}
    schema = {"type": "object", "properties": properties, "required": ["data"], "additionalProperties": False}
    return {"text/event-stream": {"schema": schema}}


def _describe(model: type[BaseModel] | None, fallback: str) -> str:
    doc = (model.__doc__ or "").strip() if model is not None else ""
    return doc.splitlines()[0] if doc else fallback


class _Builder:
    """Collects paths and component schemas; every operation is named by its Quart endpoint."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self.paths: dict[str, dict[str, Any]] = {}

    def schema(self, model: type[BaseModel]) -> dict[str, str]:
        return _schema(model, self.components)

    def content(self, response: type[BaseModel] | str | None, stream: EventStream | None) -> dict[str, Any]:
        content: dict[str, Any] = {}
        if isinstance(response, str):
            content[response] = {"schema": {"type": "string"}}
        elif response is not None:
            content["application/json"] = {"schema": self.schema(response)}
        if stream is not None:
            content.update(_sse(stream))
        return content

    def operation(self, decl: Route) -> None:
        responses: dict[str, Any] = {}
        content = self.content(decl.response, decl.stream)
        model = decl.response if isinstance(decl.response, type) else None
        responses[str(decl.status)] = {"description": _describe(model, decl.summary), "content": content}
        for status, other in decl.other.items():
            described: dict[str, Any] = {"description": _describe(other, "Not modified.")}
            if other is not None:
                described["content"] = self.content(other, None)
            responses[str(status)] = described
        statuses = {*decl.errors, *ANY_ROUTE_ERRORS, *(() if decl.public else CREDENTIAL_ERRORS)}
        error = self.schema(_ERROR_BODIES[decl.error_shape])
        for status in sorted(statuses):
            text = _ERROR_TEXT.get(status, "An error.")
            responses[str(status)] = {"description": text, "content": {"application/json": {"schema": error}}}

        declared = {(p.where, p.name) for p in decl.params}
        params = [_param(p) for p in decl.params]
        for name in _PATH_ARGUMENT.findall(decl.path):
            if ("path", name) not in declared:
                params.append(_param(Param(name, "path", {"type": "string", "minLength": 1})))
        op: dict[str, Any] = {
            "operationId": decl.endpoint,
            "summary": decl.summary,
            "x-role": decl.role,
            "x-admission": decl.admission,
            "parameters": params,
            "responses": responses,
        }
        if not decl.public:
            params.append(
                _param(
                    Param(
                        "X-Chatbot-Tenant",
                        "header",
                        {"type": "string", "pattern": TENANT_PATTERN},
                        "The tenant to act for (open access, or an admin key); else the key's tenant.",
                    )
                )
            )
            op["security"] = [{}, {"bearer": []}, {"apiKey": []}]
        if decl.body is not None:
            op["requestBody"] = {
                "required": True,
                "description": _describe(decl.body, ""),
                "content": {decl.body_media_type: {"schema": self.schema(decl.body)}},
            }
        self.paths.setdefault(openapi_path(decl.path), {})[decl.method.lower()] = op


def build_document(table: Mapping[str, Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared HTTP route (the websocket under x-websocket)."""
    b = _Builder()
    for decl in sorted(table.values(), key=lambda d: (d.path, d.method)):
        if decl.method != "WEBSOCKET":
            b.operation(decl)
    sockets = [d for d in table.values() if d.method == "WEBSOCKET"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatbot",
            "version": _version(),
            "description": 'Async RAG chat backend. Errors are {"error": {code, message, request_id}} (the '
            "OpenAI-compatible routes use OpenAI's error shape). Never a 500 for a client's mistake.",
        },
        "paths": b.paths,
        "components": {
            "schemas": b.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (cb_...)."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "x-websocket": _websocket(sockets[0]) if sockets else {},
    }


def _websocket(decl: Route) -> dict[str, Any]:
    frames: dict[str, Any] = {}
    client = {m.__name__: _schema(m, frames) for m in (AskFrame, StopFrame, ResumeFrame, PingFrame)}
    return {
        "path": decl.path,
        "x-role": decl.role,
        "x-admission": decl.admission,
        "client_frames": client,
        "schemas": frames,
        "handshake_refusals": {
            "400": "host_not_allowed: the Host header is not one of server.allowed_hosts",
            "403": "origin_not_allowed: Origin not in server.allowed_origins (or not the widget token's)",
            "401": "a forged or expired widget token",
            "429": "busy: too many open connections (per process, or per client IP)",
        },
        "close_codes": {
            "1009": "a frame larger than the server's websocket message limit",
            "1012": "service restart (graceful shutdown)",
            "1013": "try again later (the client did not read for stream.send_timeout)",
        },
        "error_frames": "A bad frame gets {type: error, code, message} and the connection stays usable.",
    }


def _version() -> str:
    try:
        return metadata.version("chatbot")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0"


@route(bp, "GET", "/openapi.json", role="public", response=OpenAPIDocument, summary="This document.")
async def openapi() -> Any:
    """Built once per app (the declarations do not change while it runs)."""
    document = current_app.extensions.get(DOCUMENT)
    if document is None:
        document = current_app.extensions[DOCUMENT] = build_document(current_app.extensions[ROUTES])
    return document
