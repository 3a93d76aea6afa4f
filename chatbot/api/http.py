"""REST and SSE routes. Transport only: parse, call the use case, render events."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from chatbot.api.context import caller, chat_service, services, tenant
from chatbot.api.responses import (
    NATIVE_EVENTS,
    UPSTREAM,
    ChatAnswer,
    Conversation,
    Health,
    Ready,
    StopResult,
)
from chatbot.api.routes import Param, route
from chatbot.api.streaming import SSE_HEADERS, EventStream, native
from chatbot.api.wire import ChatBody, parse_json, validate
from chatbot.chat.service import Ask, Collected
from chatbot.errors import BadRequest

bp = Blueprint("http", __name__)


@route(bp, "GET", "/healthz", role="public", response=Health, summary="Alive.")
async def healthz() -> Any:
    return {"status": "ok"}


@route(
    bp,
    "GET",
    "/readyz",
    role="public",
    response=Ready,
    other={503: Ready},
    summary="Ready: vector store reachable, collection present, models loaded, accepting answers.",
)
async def readyz() -> Any:
    svc = services()
    checks = {
        "vector_store": await svc.store.ping(),
        "embedder": svc.embedder.name,
        "chat_model": svc.chat.name,
        "accepting": svc.chat_service.accepting,
    }
    if svc.redis is not None:
        checks["redis"] = await svc.redis.ping()
    ready = bool(checks["vector_store"]) and svc.chat_service.accepting and checks.get("redis") is not False
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), 200 if ready else 503


async def json_body() -> Any:
    """The request's JSON body. Its size is bounded while it arrives by the route's declared max_body
    (api/bodies.py): past it, 413 payload_too_large, with or without Content-Length."""
    return parse_json(await request.get_data() or b"null")


async def chat_body() -> Any:
    """The JSON body of a route declared max_body="chat" (it carries its whole history)."""
    return await json_body()


@route(
    bp,
    "POST",
    "/v1/chat",
    role="chat",
    body=ChatBody,
    response=ChatAnswer,
    stream=NATIVE_EVENTS,
    errors=(404, 413, 422, *UPSTREAM),
    admission="service",
    summary="Ask: one JSON answer, or server-sent events with stream=true or Accept: text/event-stream.",
)
async def chat() -> Any:
    body: ChatBody = validate(ChatBody, await json_body())
    wants_sse = body.stream or "text/event-stream" in request.headers.get("Accept", "")
    who = caller()
    started = await chat_service().start(who, Ask(body.message, body.conversation_id, where=body.filter))
    if wants_sse:
        return await sse_response(started.message_id, after=0)
    return answer_body(await chat_service().collect(who, started.message_id))


def answer_body(answer: Collected) -> dict[str, Any]:
    """The whole answer as one JSON body (ChatAnswer in the OpenAPI document)."""
    body: dict[str, Any] = {
        "message_id": answer.message_id,
        "conversation_id": answer.conversation_id,
        "sources": [s.to_dict() for s in answer.sources],
        "answer": answer.text,
        "finish_reason": answer.finish_reason,
    }
    if answer.stopped:
        body["stopped"] = True
    if answer.usage is not None:
        body.update(
            model=answer.model, usage=answer.usage.to_dict(), timings=answer.timings, cached=answer.cached
        )
    return body


async def sse_response(message_id: str, *, after: int) -> Response:
    """The answer's native frames as SSE from `after` on (resumable: the answer runs on if the client
    leaves). Raises UnknownMessage before the response starts."""
    svc = services()
    events = await svc.chat_service.follow(caller(), message_id, after)
    stream = EventStream(events, native(message_id), heartbeat=svc.settings.stream.heartbeat_seconds)
    return stream.response(SSE_HEADERS)


@route(
    bp,
    "GET",
    "/v1/chat/<message_id>/events",
    role="chat",
    stream=NATIVE_EVENTS,
    errors=(404,),
    params=(
        Param("after", "query", {"type": "integer", "minimum": 0}, "Replay the events after this seq."),
        Param("Last-Event-ID", "header", {"type": "string", "pattern": "^[0-9]+$"}, "As `after`."),
    ),
    summary="Resume an answer's SSE stream after Last-Event-ID (or ?after=N).",
)
async def chat_events(message_id: str) -> Any:
    """Resume an answer's SSE stream after Last-Event-ID (or ?after=N)."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        after = int(raw)
    except ValueError:
        raise BadRequest(
            "Last-Event-ID / after must be an integer sequence number.", code="invalid_after"
        ) from None
    return await sse_response(message_id, after=after)  # 404 now, not a broken stream later


@route(
    bp,
    "POST",
    "/v1/chat/<message_id>/stop",
    role="chat",
    response=StopResult,
    errors=(404,),
    summary="Stop an answer: cancels it and closes the model's stream.",
)
async def chat_stop(message_id: str) -> Any:
    stopped = await chat_service().stop(caller(), message_id)
    return {"message_id": message_id, "stopped": stopped}


@route(
    bp,
    "GET",
    "/v1/conversations/<conversation_id>",
    role="chat",
    response=Conversation,
    errors=(404,),
    summary="A conversation's saved turns (stopped answers have stopped=true, failed ones their error).",
)
async def conversation(conversation_id: str) -> Any:
    svc = services()
    turns = await svc.conversations.history(
        tenant(), conversation_id, svc.settings.limits.max_history_messages
    )
    return {"conversation_id": conversation_id, "turns": [t.to_dict() for t in turns]}
