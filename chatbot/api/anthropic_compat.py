"""Anthropic Messages-compatible API: POST /v1/messages (stream and not). Transport only.

The anthropic SDK works against base_url http://host:port with model "chatbot": a thin renderer
(anthropic_wire.MessageStream) over the same answer events as every other dialect. Like the OpenAI route the
client keeps the history and nothing is stored; the message `id` is our message_id (POST /v1/chat/{id}/stop
stops it). Errors here use Anthropic's error shape.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, g, jsonify
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from chatbot.api.anthropic_wire import MessagesBody, MessageStream, error_body, message_of
from chatbot.api.context import caller, chat_service, services
from chatbot.api.http import chat_body
from chatbot.api.openai_requests import check_model
from chatbot.api.openai_wire import error_status
from chatbot.api.responses import ANTHROPIC_EVENTS, UPSTREAM, AnthropicMessageDoc
from chatbot.api.routes import route
from chatbot.api.streaming import SSE_HEADERS, EventStream
from chatbot.api.wire import validate
from chatbot.chat.service import Ask
from chatbot.errors import ChatbotError

log = logging.getLogger(__name__)
bp = Blueprint("anthropic_compat", __name__)

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


@bp.errorhandler(ChatbotError)
async def on_chatbot_error(err: ChatbotError) -> ResponseReturnValue:
    if err.status >= 500:
        log.warning("request %s failed: %s", g.get("request_id"), err.code)
    headers = {"request-id": str(g.get("request_id", ""))}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return jsonify(error_body(err)), error_status(err), headers


@bp.errorhandler(HTTPException)
async def on_http_exception(err: HTTPException) -> ResponseReturnValue:
    status = err.code or 500
    wrapped = ChatbotError(err.description or err.name, code=_HTTP_CODES.get(status, "http_error"))
    wrapped.status = status  # type: ignore[misc]
    return await on_chatbot_error(wrapped)


@bp.errorhandler(Exception)
async def on_unexpected(err: Exception) -> ResponseReturnValue:
    log.error("request %s failed unexpectedly", g.get("request_id"), exc_info=err)
    return await on_chatbot_error(ChatbotError())


@route(
    bp,
    "POST",
    "/v1/messages",
    role="chat",
    body=MessagesBody,
    response=AnthropicMessageDoc,
    stream=ANTHROPIC_EVENTS,
    errors=(404, 413, *UPSTREAM),
    admission="service",
    error_shape="anthropic",
    max_body="chat",
    summary="Anthropic Messages-compatible (model 'chatbot', text only); the client sends its history.",
)
async def create_message() -> Any:
    body: MessagesBody = validate(MessagesBody, await chat_body())
    check_model(body.model)
    service, who = chat_service(), caller()
    ask = Ask(
        messages=body.chat_messages(),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        options=body.options,
    )
    message_id = (await service.start(who, ask)).message_id
    if not body.stream:
        return message_of(await service.collect(who, message_id))
    # As on the OpenAI route: hold until the first token so an early failure is a real HTTP status.
    renderer = MessageStream(message_id)
    stream = EventStream(
        await service.follow(who, message_id, stop_on_leave=True),
        lambda _seq, event: renderer.render(event),
        heartbeat=services().settings.stream.heartbeat_seconds,
    )
    return await stream.response_after_first_token(SSE_HEADERS)
