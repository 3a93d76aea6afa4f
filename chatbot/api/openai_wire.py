"""The OpenAI Chat Completions wire format, rendered from our typed events. Pure: no I/O, no app context.
The request (body models, the model id) is openai_requests.py's.

- Stream: one `chat.completion.chunk` per SSE `data:` line. The first carries the role, then one per
  token batch (and one per tool call, `delta.tool_calls` whole), then a final chunk with `finish_reason`
  ("stop", "length", "tool_calls", or "cancelled" for a stopped answer: our one value outside OpenAI's
  enum) and our extension field `sources` on its `choices[0].delta`; with include_usage a usage chunk
  (`choices: []`); then `data: [DONE]` exactly once. A failure after the stream began is
  `data: {"error": {...}}` and no [DONE] (the openai SDK raises APIError on it): never a normal finish.
- Non-stream: a `chat.completion` (from ChatService.collect) with every field OpenAI's schema requires
  (`message.refusal`, `choices[].logprobs`: null; `message.annotations`: []), `message.content`,
  `.tool_calls`, `.sources`, `finish_reason` and `usage`.
- Errors: `{"error": {"message", "type", "code", "param"}}` with the status that the SDK maps to the matching
  exception class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chatbot.api.openai_requests import MODEL_ID, ModelNotFound
from chatbot.chat.service import Collected, error_of
from chatbot.errors import ChatbotError
from chatbot.events import (
    ChatEvent,
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
)

MODEL_CREATED = 0  # models have no meaningful creation time here
CANCELLED = "cancelled"  # finish_reason of an answer stopped before its end (not an OpenAI value)
DONE = b"data: [DONE]\n\n"

# -- responses --------------------------------------------------------------------------------------


def model_object(model_id: str = MODEL_ID) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "chatbot"}


def model_list() -> dict[str, Any]:
    return {"object": "list", "data": [model_object()]}


def chunk(
    completion_id: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    model: str = MODEL_ID,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(completion_id: str, created: int, usage: Usage, *, model: str = MODEL_ID) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage.to_dict(),
    }


def tool_call(call: ToolCallEvent) -> dict[str, Any]:
    """A tool call in OpenAI's shape (in a stream's delta it also carries its index)."""
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def completion(
    completion_id: str,
    created: int,
    *,
    content: str,
    finish_reason: str,
    sources: Sequence[Source],
    usage: Usage | None,
    tool_calls: Sequence[ToolCallEvent] = (),
    model: str = MODEL_ID,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content if content or not tool_calls else None,  # OpenAI: null beside tool calls
        "refusal": None,
        "annotations": [],  # OpenAI's url citations; ours are `sources`
    }
    if tool_calls:
        message["tool_calls"] = [tool_call(c) for c in tool_calls]
    message["sources"] = [s.to_dict() for s in sources]
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage.to_dict()
    return body


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class ChunkStream:
    """Renders one answer's events as SSE bytes, in order. Stateful (sources wait for the final chunk)."""

    def __init__(
        self, completion_id: str, created: int, *, include_usage: bool, model: str = MODEL_ID
    ) -> None:
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.model = model
        self.sources: tuple[Source, ...] = ()
        self.ended = False

    def render(self, event: ChatEvent) -> list[bytes]:
        if self.ended:
            return []
        if isinstance(event, StartEvent):
            return [self._chunk({"role": "assistant", "content": ""})]
        if isinstance(event, SourcesEvent):
            self.sources = event.sources
            return []
        if isinstance(event, TokenEvent):
            return [self._chunk({"content": event.delta})] if event.delta else []
        if isinstance(event, ToolCallEvent):
            return [self._chunk({"tool_calls": [{"index": event.index, **tool_call(event)}]})]
        self.ended = True
        if isinstance(event, DoneEvent):
            out = [self._final(event.finish_reason)]
            if self.include_usage:
                out.append(sse(usage_chunk(self.completion_id, self.created, event.usage, model=self.model)))
            return [*out, DONE]
        if isinstance(event, StoppedEvent):
            return [self._final(CANCELLED), DONE]
        return [sse(error_event_body(event))]  # ErrorEvent: the SDK raises; no [DONE] after an error

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return sse(chunk(self.completion_id, self.created, delta, finish_reason, model=self.model))

    def _final(self, finish_reason: str) -> bytes:
        return self._chunk({"sources": [s.to_dict() for s in self.sources]}, finish_reason)


def completion_of(answer: Collected, created: int, *, model: str = MODEL_ID) -> dict[str, Any]:
    """A whole answer (ChatService.collect) as one chat.completion; a stopped answer ends 'cancelled'."""
    return completion(
        answer.message_id,
        created,
        content=answer.text,
        finish_reason=CANCELLED if answer.stopped else answer.finish_reason,
        sources=answer.sources,
        usage=answer.usage,
        tool_calls=answer.tool_calls,
        model=model,
    )


# -- errors -----------------------------------------------------------------------------------------

_MESSAGES_CODES = frozenset(
    {"empty_message", "message_too_long", "no_messages", "last_message_not_user", "unsupported_content"}
)


def error_status(err: ChatbotError) -> int:
    """OpenAI reports request problems as 400 (the SDK's BadRequestError), never 422; a too-long message is
    400 like OpenAI's context_length_exceeded. A too-large body stays 413 (APIStatusError)."""
    if err.status == 422 or err.code == "message_too_long":
        return 400
    return err.status


def error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_param(err: ChatbotError) -> str | None:
    param = err.details.get("param")
    if isinstance(param, str):
        return param
    if err.code in _MESSAGES_CODES:
        return "messages"
    if err.code == ModelNotFound.code:
        return "model"
    errors = err.details.get("errors")
    if err.code == "validation_error" and isinstance(errors, list) and errors:
        loc = errors[0].get("loc") if isinstance(errors[0], dict) else None
        return loc if isinstance(loc, str) and loc else None
    return None


def error_body(err: ChatbotError) -> dict[str, Any]:
    message = err.message
    if err.code == "validation_error" and (param := error_param(err)):
        message = f"{message} Invalid field: '{param}'."
    return {
        "error": {
            "message": message,
            "type": error_type(error_status(err)),
            "code": err.code,
            "param": error_param(err),
        }
    }


def error_event_body(event: ErrorEvent) -> dict[str, Any]:
    """The data of an in-stream error (the answer failed after the stream began)."""
    return error_body(error_of(event))
