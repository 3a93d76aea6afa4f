"""OpenAI-compatible API: POST /v1/chat/completions (stream and not), GET /v1/models. Transport only.

Any OpenAI client works against base_url http://host:port/v1 with model "chatbot". The client keeps the
history: its earlier messages are passed to the pipeline and nothing is stored here. The completion `id` is
our message_id, so POST /v1/chat/{id}/stop stops these answers too. Errors here use OpenAI's error shape.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from quart import Blueprint

from chatbot.api.context import caller, chat_service, services
from chatbot.api.http import chat_body
from chatbot.api.openai_requests import ChatCompletionBody, check_model
from chatbot.api.openai_wire import (
    ChunkStream,
    completion_of,
    model_list,
    model_object,
)
from chatbot.api.responses import OPENAI_CHUNKS, UPSTREAM, ChatCompletion, ModelDoc, ModelListDoc
from chatbot.api.routes import route
from chatbot.api.streaming import SSE_HEADERS, EventStream
from chatbot.api.wire import validate
from chatbot.chat.service import Ask

log = logging.getLogger(__name__)
bp = Blueprint("openai_compat", __name__)


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
    max_body="chat",
    summary="OpenAI-compatible chat completions (model 'chatbot'); the client sends its history.",
)
async def chat_completions() -> Any:
    body: ChatCompletionBody = validate(ChatCompletionBody, await chat_body())
    check_model(body.model)
    service, who = chat_service(), caller()
    ask = Ask(
        messages=body.chat_messages(),
        max_tokens=body.token_limit,
        temperature=body.temperature,
        options=body.options,
        where=body.metadata_filter,
    )
    message_id = (await service.start(who, ask)).message_id
    created = int(time.time())
    if not body.stream:
        return completion_of(await service.collect(who, message_id), created)
    # Hold the response until the first token (at most one heartbeat interval): an answer that fails before
    # it (retrieval, the model refusing the request, a rate limit) gets a real HTTP status, so the SDK
    # raises its matching exception class (and retries what it retries). After it, errors are in-stream.
    chunks = ChunkStream(message_id, created, include_usage=body.include_usage)
    stream = EventStream(
        await service.follow(who, message_id, stop_on_leave=True),  # these clients cannot resume
        lambda _seq, event: chunks.render(event),
        heartbeat=services().settings.stream.heartbeat_seconds,
    )
    return await stream.response_after_first_token(SSE_HEADERS)
