"""create_app(settings, services=None) -> Quart. No app, client or settings exist at import time."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from quart import Quart, g, jsonify, request
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from chatbot.api.auth import PUBLIC_ENDPOINTS, KeyRing, authorize, bind, identify
from chatbot.api.context import EXTENSION, KEYRING
from chatbot.api.routes import blueprints
from chatbot.api.ws import CLOSE_SERVICE_RESTART, origin_allowed
from chatbot.errors import ChatbotError
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


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Quart:
    if settings is None:
        settings = services.settings if services is not None else Settings()
    app = Quart(__name__)
    limits = settings.limits
    app.config.update(
        MAX_CONTENT_LENGTH=limits.max_upload_bytes * limits.max_files_per_upload + 1024 * 1024,
        BODY_TIMEOUT=60,
        RESPONSE_TIMEOUT=None,  # streamed answers have their own deadlines (settings.deadlines)
    )
    for bp in blueprints():
        app.register_blueprint(bp)
    _register_error_handlers(app)
    _register_request_hooks(app, settings)

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


async def drain(app: Quart) -> None:
    """Graceful shutdown: refuse new answers, let running ones finish until the deadline, end the rest
    with an error event, then close every websocket with 1012 (service restart)."""
    svc: Services | None = app.extensions.get(EXTENSION)
    if svc is None:
        return
    await svc.answers.shutdown(svc.settings.server.shutdown_seconds)
    for conn in list(svc.connections):
        conn.close(CLOSE_SERVICE_RESTART)


def error_response(err: ChatbotError) -> ResponseReturnValue:
    body = {"error": {**err.to_dict(), "request_id": g.get("request_id", "")}}
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return jsonify(body), err.status, headers


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
        return error_response(wrapped)

    @app.errorhandler(Exception)
    async def on_unexpected(err: Exception) -> ResponseReturnValue:
        log.error("request %s failed unexpectedly", g.get("request_id"), exc_info=err)
        return error_response(ChatbotError())


def _register_request_hooks(app: Quart, settings: Settings) -> None:
    keyring = KeyRing(settings.auth.api_keys)
    app.extensions[KEYRING] = keyring
    allowed = settings.server.allowed_origins

    @app.before_request
    async def assign_request_id() -> ResponseReturnValue | None:
        g.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        g.request_started = time.perf_counter()
        bind_request_id(g.request_id)  # log lines of this request (and tasks it starts) carry it
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            return "", 204
        if request.endpoint not in PUBLIC_ENDPOINTS:
            identity = identify(settings, keyring, request.headers, request.args)
            authorize(identity, request.endpoint)
            bind(identity)
            quotas = app.extensions[EXTENSION].quotas
            if quotas is not None:
                await quotas.admit_request(identity.subject)
        return None

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
