"""POST /v1/ui/chat: the AI SDK UI message stream for useChat (AI SDK 5+). Transport only.

useChat keeps the history and sends it whole: the last message is the question, earlier ones the history;
nothing is stored here. Errors before the stream starts (validation, busy) are our usual JSON errors with
their HTTP status; an answer that fails later ends with an `error` part. A client that closes the stream
(useChat's stop()) stops the answer.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from chatbot.api.context import caller, chat_service, services
from chatbot.api.http import chat_body
from chatbot.api.responses import UI_PARTS
from chatbot.api.routes import route
from chatbot.api.streaming import EventStream
from chatbot.api.vercel_wire import UI_STREAM_HEADERS, UIChatBody, UIStream
from chatbot.api.wire import validate
from chatbot.chat.service import Ask

bp = Blueprint("vercel", __name__)


@route(
    bp,
    "POST",
    "/v1/ui/chat",
    role="chat",
    body=UIChatBody,
    stream=UI_PARTS,
    errors=(413, 422),
    admission="service",
    max_body="chat",
    summary="The AI SDK UI message stream (useChat); the client sends its history.",
)
async def ui_chat() -> Any:
    body: UIChatBody = validate(UIChatBody, await chat_body())
    service, who = chat_service(), caller()
    message_id = (await service.start(who, Ask(messages=body.chat_messages(), where=body.filter))).message_id
    parts = UIStream(message_id)
    stream = EventStream(
        await service.follow(who, message_id, stop_on_leave=True),  # useChat cannot resume
        lambda _seq, event: parts.render(event),
        heartbeat=services().settings.stream.heartbeat_seconds,
    )
    return stream.response(UI_STREAM_HEADERS)
