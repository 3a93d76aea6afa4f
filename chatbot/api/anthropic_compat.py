"""Anthropic Messages-compatible API: POST /v1/messages (stream and not). Transport only.

The anthropic SDK works against base_url http://host:port with model "chatbot": a thin renderer
(anthropic_wire.MessageStream) over the same answer events as every other dialect. Like the OpenAI route the
client keeps the history and nothing is stored; the message `id` is our message_id (POST /v1/chat/{id}/stop
stops it). Errors here use Anthropic's error shape.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint

from chatbot.api.anthropic_wire import MessagesBody, MessageStream, message_of
from chatbot.api.context import caller, chat_service, services
from chatbot.api.http import chat_body
from chatbot.api.openai_requests import check_model
from chatbot.api.responses import ANTHROPIC_EVENTS, UPSTREAM, AnthropicMessageDoc
from chatbot.api.routes import route
from chatbot.api.streaming import SSE_HEADERS, EventStream
from chatbot.api.wire import validate
from chatbot.chat.service import Ask

log = logging.getLogger(__name__)
bp = Blueprint("anthropic_compat", __name__)


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
