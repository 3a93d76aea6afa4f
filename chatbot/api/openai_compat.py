"""OpenAI-compatible API: POST /v1/chat/completions (stream and not), GET /v1/models. Transport only.

Any OpenAI client works against base_url http://host:port/v1 with model "chatbot". The client keeps the
history: its earlier messages are passed to the pipeline and nothing is stored here. The completion `id` is
our message_id, so POST /v1/chat/{id}/stop stops these answers too. Errors here use OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from quart import Blueprint, Response, g, jsonify
from quart.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from chatbot.api.asks import follow_answer, read_chat_body, start_answer_with_history, streamed_answer
from chatbot.api.context import services, tenant
from chatbot.api.openai_wire import (
    ChatCompletionBody,
    ChunkStream,
    CompletionBuilder,
    check_model,
    error_body,
    error_from_event,
    error_status,
    model_list,
    model_object,
)
from chatbot.api.responses import OPENAI_CHUNKS, UPSTREAM, ChatCompletion, ModelDoc, ModelListDoc
from chatbot.api.routes import route
from chatbot.api.sse import SSE_HEADERS, Heartbeat
from chatbot.api.wire import validate
from chatbot.chat.answers import DISCONNECTED
from chatbot.errors import ChatbotError
from chatbot.rag.events import ChatEvent, ErrorEvent, TokenEvent, is_terminal

log = logging.getLogger(__name__)
bp = Blueprint("openai_compat", __name__)


@bp.errorhandler(ChatbotError)
async def on_chatbot_error(err: ChatbotError) -> ResponseReturnValue:
    if err.status >= 500:
        log.warning("request %s failed: %s", g.get("request_id"), err.code)
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return jsonify(error_body(err)), error_status(err), headers


_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


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
    "GET",
    "/v1/models",
    role="chat",
    response=ModelListDoc,
    error_shape="openai",
    summary="OpenAI-compatible model list: the one model, 'chatbot'.",
)
async def list_models() -> Any:
    return model_list()


@route(
    bp,
    "GET",
    "/v1/models/<model_id>",
    role="chat",
    response=ModelDoc,
    errors=(404,),
    error_shape="openai",
    summary="One model.",
)
async def get_model(model_id: str) -> Any:
    check_model(model_id)
    return model_object(model_id)


@route(
    bp,
    "POST",
    "/v1/chat/completions",
    role="chat",
    body=ChatCompletionBody,
    response=ChatCompletion,
    stream=OPENAI_CHUNKS,
    errors=(404, 413, *UPSTREAM),
    admission="service",
    error_shape="openai",
    summary="OpenAI-compatible chat completions (model 'chatbot'); the client sends its history.",
)
async def chat_completions() -> Any:
    body: ChatCompletionBody = validate(ChatCompletionBody, await read_chat_body())
    check_model(body.model)
    message_id = await start_answer_with_history(
        body.chat_messages(), max_tokens=body.token_limit, temperature=body.temperature
    )
    created = int(time.time())
    if body.stream:
        return await stream_completion(message_id, created, include_usage=body.include_usage)
    return await complete(message_id, created)


async def complete(message_id: str, created: int) -> Any:
    """The whole answer as one chat.completion; an answer that fails is an HTTP error."""
    builder = CompletionBuilder(message_id, created)
    events = follow_answer(services().answers, message_id, tenant())
    try:
        async for event in events:
            if not isinstance(event, Heartbeat):
                builder.add(event)
    finally:
        await events.aclose()  # type: ignore[attr-defined]  # stops the answer if the client went away
    return builder.result()


async def stream_completion(message_id: str, created: int, *, include_usage: bool) -> Response:
    """Hold the response until the first token (at most one heartbeat interval): an answer that fails before
    it (retrieval, the model refusing the request, a rate limit) gets a real HTTP status, so the SDK raises
    its matching exception class (and retries what it retries). After it, errors are in-stream."""
    svc = services()
    who = tenant()
    interval = svc.settings.stream.heartbeat_seconds
    held = await _events_until_first_token(message_id, who, interval)
    if held and isinstance(held[-1], ErrorEvent):
        raise error_from_event(held[-1])

    return streamed_answer(
        message_id, ChunkStream(message_id, created, include_usage=include_usage).render, SSE_HEADERS
    )


async def _events_until_first_token(message_id: str, who: str, wait: float) -> list[ChatEvent]:
    """The answer's events up to its first token or its end, or those that came within `wait` seconds.
    Reads the log without attaching; the streaming body then reads the answer from its start."""
    held: list[ChatEvent] = []
    answers = services().answers
    events = answers.log.read(message_id, who)
    completed = False
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                async for _seq, event in events:
                    held.append(event)
                    if isinstance(event, TokenEvent) or is_terminal(event):
                        break
        completed = True
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        if not completed:  # the client left while we waited
            answers.cancel_local(message_id, DISCONNECTED)
    return held
