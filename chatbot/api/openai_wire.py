"""The OpenAI Chat Completions wire format, rendered from our typed events. Pure: no I/O, no app context.

- Request: `messages` (string content or a list of {"type": "text"} parts), `model`, `stream`,
  `stream_options.include_usage`, `max_tokens` / `max_completion_tokens`, `temperature`. Other fields are
  ignored.
- Stream: one `chat.completion.chunk` per SSE `data:` line. The first carries the role, then one per
  token batch, then a final chunk with `finish_reason` ("stop", "length", or "cancelled" for a stopped
  answer) and our extension field `sources` on its `choices[0].delta`; with include_usage a usage chunk
  (`choices: []`); then `data: [DONE]` exactly once. A failure after the stream began is
  `data: {"error": {...}}` and no [DONE] (the openai SDK raises APIError on it): never a normal finish.
- Non-stream: a `chat.completion` (from ChatService.collect) with `choices[0].message.content`, `.sources`,
  `finish_reason` and `usage`.
- Errors: `{"error": {"message", "type", "code", "param"}}` with the status that the SDK maps to the matching
  exception class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatbot.api.wire import FILTER_DESCRIPTION
from chatbot.chat.service import Collected, error_of
from chatbot.errors import BadRequest, ChatbotError, NotFound
from chatbot.providers.base import ChatMessage
from chatbot.rag.events import (
    ChatEvent,
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
    Usage,
)
from chatbot.stores.base import MetadataFilter

MODEL_ID = "chatbot"
"""The one model id: answers from the caller's tenant's documents (X-Chatbot-Tenant, else the default)."""
MODEL_CREATED = 0  # models have no meaningful creation time here
CANCELLED = "cancelled"  # finish_reason of an answer stopped before its end (not an OpenAI value)
DONE = b"data: [DONE]\n\n"

# -- requests ---------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise UnsupportedContent()
            texts.append(part.text)
        return "\n".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    """POST /v1/chat/completions (the fields we use; the rest of OpenAI's request is ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, json_schema_extra={"enum": [MODEL_ID]})  # else 404 model_not_found
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is generated.")
    metadata_filter: MetadataFilter | None = Field(
        None, description="Extension (openai SDK: extra_body={'metadata_filter': ...}). " + FILTER_DESCRIPTION
    )

    def chat_messages(self) -> list[ChatMessage]:
        """system and developer messages become 'system' (dropped later: our prompts define the assistant)."""
        out = []
        for m in self.messages:
            role: Literal["system", "user", "assistant"] = "system" if m.role == "developer" else m.role
            out.append(ChatMessage(role, m.text()))
        return out

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class UnsupportedContent(BadRequest):
    code = "unsupported_content"
    default_message = "Only text content parts are supported."


class ModelNotFound(NotFound):
    code = "model_not_found"
    default_message = f"The model does not exist; this server answers as '{MODEL_ID}' (see GET /v1/models)."


def check_model(model: str) -> None:
    if model != MODEL_ID:
        raise ModelNotFound()


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
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
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


def completion(
    completion_id: str,
    created: int,
    *,
    content: str,
    finish_reason: str,
    sources: Sequence[Source],
    usage: Usage | None,
    model: str = MODEL_ID,
) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "sources": [s.to_dict() for s in sources]}
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
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
