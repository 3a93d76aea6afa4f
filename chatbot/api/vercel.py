"""POST /v1/ui/chat: the AI SDK UI message stream for useChat (AI SDK 5+). Transport only.

useChat keeps the history and sends it whole: the last message is the question, earlier ones the history;
nothing is stored here. Errors before the stream starts (validation, busy) are our usual JSON errors with
their HTTP status; an answer that fails later ends with an `error` part. A client that closes the stream
(useChat's stop()) stops the answer.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from chatbot.api.asks import read_chat_body, start_answer_with_history, streamed_answer
from chatbot.api.responses import UI_PARTS
from chatbot.api.routes import route
from chatbot.api.vercel_wire import UI_STREAM_HEADERS, UIChatBody, UIStream
from chatbot.api.wire import validate

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
    summary="The AI SDK UI message stream (useChat); the client sends its history.",
)
async def ui_chat() -> Any:
    body: UIChatBody = validate(UIChatBody, await read_chat_body())
    message_id = await start_answer_with_history(body.chat_messages())
    return streamed_answer(message_id, UIStream(message_id).render, UI_STREAM_HEADERS)
