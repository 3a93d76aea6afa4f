"""create_app(settings, services=None) -> Quart. No app, client or settings exist at import time."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from quart import Blueprint, Quart, g, has_request_context, jsonify, request, websocket
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from chatbot.api import (
    anthropic_compat,
    anthropic_wire,
    debug,
    documents,
    feedback,
    http,
    ingest,
    mcp,
    metrics,
    openai_compat,
    openai_wire,
    openapi,
    search,
    vercel,
    widget,
    ws,
)
from chatbot.api.auth import KeyRing, allowed_hosts, authorize, bind, check_host, client_address, identify
from chatbot.api.bodies import RouteHTTPConnection, RouteRequest, limit_body
from chatbot.api.context import EXTENSION, KEYRING, caller
from chatbot.api.routes import ROUTES, declared, hook_rate_limits, route_table
from chatbot.api.ws import CLOSE_SERVICE_RESTART, origin_allowed
from chatbot.errors import ChatbotError, Forbidden
from chatbot.ops.observability import bind_request_id
from chatbot.settings import Settings
from chatbot.wiring import Services, build_services

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def blueprints() -> list[Blueprint]:
    """Every blueprint the app serves; a transport module adds its blueprint here (one line each). Each of
    their routes is declared with chatbot.api.routes.route (role, models, admission)."""
    return [
        http.bp,
        ingest.bp,
        documents.bp,
        search.bp,
        ws.bp,
        debug.bp,
        metrics.bp,
        widget.bp,
        openai_compat.bp,
        anthropic_compat.bp,
        vercel.bp,
        openapi.bp,
        feedback.bp,
        mcp.bp,
    ]


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    extra_blueprints: Sequence[Blueprint] = (),
) -> Quart:
    """The app; ConfigError when a route has no declaration (no role means it would not start).
    `extra_blueprints` are mounted beside ours and held to the same rule (tests mount a websocket echo route)."""
    if settings is None:
        settings = services.settings if services is not None else Settings()
    # No static route: the widget serves its two files from memory (api/widget.py); a /static/<path> route
    # would be one more endpoint serving the package directory as is.
    app = Quart(__name__, static_folder=None)
    # bodies are read to each route's declared limit, within limits.body_timeout_seconds (api/bodies.py);
    # MAX_CONTENT_LENGTH stays the ceiling of the largest route (uploads)
    app.request_class = RouteRequest
    app.asgi_http_class = RouteHTTPConnection
    limits = settings.limits
    app.config.update(
        MAX_CONTENT_LENGTH=limits.max_upload_bytes * limits.max_files_per_upload + limits.max_frame_bytes,
        BODY_TIMEOUT=limits.body_timeout_seconds,
        RESPONSE_TIMEOUT=None,  # streamed answers have their own deadlines (settings.deadlines)
    )
    for bp in (*blueprints(), *extra_blueprints):
        app.register_blueprint(bp)
    app.extensions[ROUTES] = route_table(app)  # fail closed: raises for an undeclared endpoint
    _register_error_handlers(app)
    _register_request_hooks(app, settings)
    mcp.install(app)  # the MCP session manager runs while the app serves

    if services is not None:
        app.extensions[EXTENSION] = services
    else:

        @app.while_serving
        async def lifespan() -> AsyncGenerator[None, None]:
            async with build_services(settings) as built:
                app.extensions[EXTENSION] = built
                yield
                await drain(app)

    return app


async def drain(app: Quart, seconds: float | None = None) -> None:
    """Graceful shutdown within `seconds` (default server.shutdown_seconds): refuse new answers, let running
    ones finish for most of it, end the rest with an error event, then close every websocket with 1012."""
    svc: Services | None = app.extensions.get(EXTENSION)
    if svc is None:
        return
    await svc.answers.shutdown(svc.settings.server.shutdown_seconds if seconds is None else seconds)
    for conn in list(svc.connections):
        conn.close(CLOSE_SERVICE_RESTART)


def error_response(err: ChatbotError) -> tuple[Any, int, dict[str, str]]:
    """The error in the shape its route declares (error_shape): ours, OpenAI's or Anthropic's, so each
    dialect's SDK raises its own exception classes; ours for anything not routed."""
    request_id = str(g.get("request_id", ""))
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    decl = declared(request.endpoint) if has_request_context() else None
    shape = decl.error_shape if decl is not None else "native"
    if shape == "openai":
        return jsonify(openai_wire.error_body(err)), openai_wire.error_status(err), headers
    if shape == "anthropic":
        headers["request-id"] = request_id
        return jsonify(anthropic_wire.error_body(err)), openai_wire.error_status(err), headers
    return jsonify({"error": {**err.to_dict(), "request_id": request_id}}), err.status, headers


def _register_error_handlers(app: Quart) -> None:
    @app.errorhandler(ChatbotError)
    async def on_chatbot_error(err: ChatbotError) -> ResponseReturnValue:
        if err.status >= 500:
            log.warning("request %s failed: %s", g.get("request_id"), err.code)
        return error_response(err)

    @app.errorhandler(HTTPException)
    async def on_http_exception(err: HTTPException) -> ResponseReturnValue:
        status = err.code or 500
        wrapped = ChatbotError(err.description or err.name, code=_HTTP_CODES.get(status, "http_error"))
        wrapped.status = status  # type: ignore[misc]
        body, status, headers = error_response(wrapped)
        if isinstance(err, MethodNotAllowed) and err.valid_methods:
            headers["Allow"] = ", ".join(sorted(err.valid_methods))  # RFC 9110: a 405 says what is allowed
        return body, status, headers

    @app.errorhandler(Exception)
    async def on_unexpected(err: Exception) -> ResponseReturnValue:
        log.error("request %s failed unexpectedly", g.get("request_id"), exc_info=err)
        return error_response(ChatbotError())


def _register_request_hooks(app: Quart, settings: Settings) -> None:
    keyring = KeyRing(settings.auth.api_keys)
    app.extensions[KEYRING] = keyring
    allowed = settings.server.allowed_origins
    hosts = allowed_hosts(settings)
    trusted_proxies = settings.server.trusted_proxies

    @app.before_request
    async def admit_request() -> ResponseReturnValue | None:
        """Request id, Host check, preflight, then the declared role: identify, authorize, rate-limit."""
        g.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        g.request_started = time.perf_counter()
        bind_request_id(g.request_id)  # log lines of this request (and tasks it starts) carry it
        route = declared(request.endpoint) if request.routing_exception is None else None
        limit_body(route, settings.limits)  # the body flows in from here, up to this route's limit
        g.client_address = client_address(
            request.remote_addr or "", request.headers.get("X-Forwarded-For"), trusted_proxies
        )
        check_host(request.host, hosts)  # DNS rebinding: a page on another name must not reach us
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            return "", 204
        if request.routing_exception is not None:
            return None  # 404 / 405: the routing error answers, nothing of a route runs
        decl = declared(request.endpoint)
        if decl is None:
            raise Forbidden("This endpoint declares no role; it is refused.")
        if not decl.public:
            identity = identify(settings, keyring, request.headers, request.args)
            authorize(identity, request.endpoint)
            bind(identity)
            if hook_rate_limits(decl):  # routes that start answers are admitted by the chat service
                await app.extensions[EXTENSION].chat_service.admit_request(caller())
        return None

    @app.before_websocket
    async def admit_websocket() -> None:
        """The handshake gets the HTTP checks: Host, then the declared role (an undeclared websocket endpoint is
        refused, whatever its body does). Rate limits and connection slots stay with the route (per ask)."""
        g.request_id = websocket.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        g.client_address = client_address(
            websocket.remote_addr or "", websocket.headers.get("X-Forwarded-For"), trusted_proxies
        )
        check_host(websocket.host, hosts)
        if websocket.routing_exception is not None:
            return
        decl = declared(websocket.endpoint)
        if decl is None:
            raise Forbidden("This endpoint declares no role; it is refused.")
        if not decl.public:
            identity = identify(settings, keyring, websocket.headers, websocket.args)
            authorize(identity, websocket.endpoint)
            bind(identity)

    @app.after_request
    async def observe_request(response: Any) -> Any:
        """Request count and time to headers, labelled by route rule (bounded), not by raw path."""
        svc: Services | None = app.extensions.get(EXTENSION)
        started = g.get("request_started")
        if svc is not None and started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else None
            elapsed = time.perf_counter() - started
            svc.metrics.observe_request(request.method, rule, response.status_code, elapsed)
        return response

    @app.after_request
    async def add_headers(response: Any) -> Any:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        origin = request.headers.get("Origin")
        if origin and allowed and origin_allowed(origin, None, allowed):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.vary.add("Origin")  # keeps Vary: Accept-Encoding of compressed responses
            response.headers["Access-Control-Allow-Headers"] = (
                "Authorization, Content-Type, X-Chatbot-Tenant, Last-Event-ID"
            )
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        return response
