"""The OpenAI Chat Completions wire format, rendered from our typed events. Pure: no I/O, no app context.

- Request: `messages` (system/developer, user, assistant (with `tool_calls`), tool (with `tool_call_id`);
  string content or a list of {"type": "text"} parts), `model`, `stream`, `stream_options.include_usage`,
  `max_tokens` / `max_completion_tokens`, `temperature`, `stop`, `seed`, `response_format`, `tools`,
  `tool_choice` (passed to the chat model; a model that cannot honour one refuses the request with 400
  `unsupported_option` naming it), `n` (only 1: more is a 400 naming `n`). Other fields are ignored.
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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chatbot.api.wire import FILTER_DESCRIPTION
from chatbot.chat.service import Collected, error_of
from chatbot.errors import BadRequest, ChatbotError, NotFound
from chatbot.providers.base import PLAIN, ChatMessage, GenerationOptions, Tool, ToolCall
from chatbot.rag.events import (
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


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=100_000)


class MessageToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[MessageToolCall] | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _tool_fields(self) -> Message:
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs tool_call_id")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message carries tool_calls")
        return self

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


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionDef


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: dict[Literal["name"], str]


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")  # json_schema's body goes to the model as sent

    type: Literal["text", "json_object", "json_schema"]


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
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is generated: n > 1 is a 400.")
    stop: str | Annotated[list[str], Field(max_length=4)] | None = Field(
        None, description="Up to 4 stop sequences."
    )
    seed: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    metadata_filter: MetadataFilter | None = Field(
        None, description="Extension (openai SDK: extra_body={'metadata_filter': ...}). " + FILTER_DESCRIPTION
    )

    def chat_messages(self) -> list[ChatMessage]:
        """system and developer messages become 'system' (dropped later: our prompts define the assistant)."""
        out = []
        for m in self.messages:
            role: Literal["system", "user", "assistant", "tool"] = (
                "system" if m.role == "developer" else m.role
            )
            calls = tuple(
                ToolCall(c.id, c.function.name, c.function.arguments, index=i)
                for i, c in enumerate(m.tool_calls or ())
            )
            out.append(ChatMessage(role, m.text(), tool_calls=calls, tool_call_id=m.tool_call_id))
        return out

    @property
    def options(self) -> GenerationOptions:
        """The generation options asked for (PLAIN when none)."""
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        options = GenerationOptions(
            stop=tuple(s for s in stop if s),
            seed=self.seed,
            response_format=(
                self.response_format.model_dump()
                if self.response_format and self.response_format.type != "text"  # text: the default
                else None
            ),
            tools=tuple(
                Tool(t.function.name, t.function.description, t.function.parameters, t.function.strict)
                for t in self.tools or ()
            ),
            tool_choice=(
                self.tool_choice.model_dump() if isinstance(self.tool_choice, BaseModel) else self.tool_choice
            ),
        )
        return PLAIN if options.plain else options

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
