"""POST /v1/ui/chat: the AI SDK UI message stream for useChat (AI SDK 5+). Transport only.

useChat keeps the history and sends it whole: the last message is the question, earlier ones the history;
nothing is stored here. Errors before the stream starts (validation, busy) are our usual JSON errors with
their HTTP status; an answer that fails later ends with an `error` part. A client that closes the stream
(useChat's stop()) stops the answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response

from chatbot.api.asks import follow_answer, read_chat_body, start_answer_with_history
from chatbot.api.context import services, tenant
from chatbot.api.sse import HEARTBEAT, Heartbeat
from chatbot.api.vercel_wire import UI_STREAM_HEADERS, UIChatBody, UIStream
from chatbot.api.wire import validate

bp = Blueprint("vercel", __name__)


@bp.post("/v1/ui/chat")
async def ui_chat() -> Any:
    body: UIChatBody = validate(UIChatBody, await read_chat_body())
    message_id = await start_answer_with_history(body.chat_messages())
    svc = services()
    who = tenant()
    interval = svc.settings.stream.heartbeat_seconds

    async def stream() -> AsyncIterator[bytes]:
        parts = UIStream(message_id)
        events = follow_answer(svc.answers, message_id, who, heartbeat=interval)
        try:
            async for event in events:
                if isinstance(event, Heartbeat):
                    yield HEARTBEAT
                    continue
                for frame in parts.render(event):
                    yield frame
        finally:
            await events.aclose()  # type: ignore[attr-defined]  # stops the answer if the client went away

    response = Response(stream(), status=200, headers=UI_STREAM_HEADERS)
    response.timeout = None  # an answer may stream longer than Quart's default
    return response
