"""The Anthropic Messages wire format, rendered from our typed events. Pure: no I/O, no app context.

- Request: `model` ("chatbot"), `max_tokens` (required), `messages` (user / assistant; string content or
  text blocks), `system` (dropped: our prompts define the assistant), `stop_sequences`, `temperature`,
  `stream`. `tools` / `tool_choice` and non-text blocks are refused with a 400 naming them (this route
  speaks text; agents use the OpenAI-compatible route for tools). Other fields are ignored.
- Stream: `message_start`, `content_block_start`, one `content_block_delta` (text_delta) per token batch,
  `content_block_stop`, `message_delta` (stop_reason, output usage) and `message_stop`, each as
  `event: <type>` + `data: <json>`. A failure after the stream began is `event: error` (the anthropic SDK
  raises on it), never a normal end.
- stop_reason: "end_turn" (a stop sequence too: the chat model does not say which one matched),
  "max_tokens", or "cancelled" for a stopped answer (our one value outside Anthropic's).
- Errors: `{"type": "error", "error": {"type", "message"}}` with the status the SDK maps to its exception.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatbot.api.openai_requests import MODEL_ID, UnsupportedContent
from chatbot.api.openai_wire import error_status
from chatbot.chat.service import Collected, error_of
from chatbot.errors import ChatbotError
from chatbot.events import ChatEvent, DoneEvent, ErrorEvent, StartEvent, StoppedEvent, TokenEvent, Usage
from chatbot.providers.base import PLAIN, ChatMessage, GenerationOptions, UnsupportedOption

CANCELLED = "cancelled"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}

# -- requests ---------------------------------------------------------------------------------------


class Block(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


def _text(content: str | list[Block]) -> str:
    if isinstance(content, str):
        return content
    if any(b.type != "text" or b.text is None for b in content):
        raise UnsupportedContent("Only text content blocks are supported.")
    return "\n".join(b.text or "" for b in content)


class AnthropicMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: str | list[Block]


class MessagesBody(BaseModel):
    """POST /v1/messages (the fields we use; the rest of Anthropic's request is ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, json_schema_extra={"enum": [MODEL_ID]})  # else 404 not_found_error
    max_tokens: int = Field(ge=1)
    messages: list[AnthropicMessage]
    system: str | list[Block] | None = None
    stop_sequences: Annotated[list[str], Field(max_length=16)] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    stream: bool = False
    tools: list[dict[str, Any]] | None = Field(None, description="Refused when not empty: text only here.")
    tool_choice: dict[str, Any] | None = Field(None, description="Refused: text only here.")

    def chat_messages(self) -> list[ChatMessage]:
        if self.tools:
            raise UnsupportedOption("tools", "the Anthropic-compatible route")
        if self.tool_choice is not None:
            raise UnsupportedOption("tool_choice", "the Anthropic-compatible route")
        system = [ChatMessage("system", _text(self.system))] if self.system else []
        return system + [ChatMessage(m.role, _text(m.content)) for m in self.messages]

    @property
    def options(self) -> GenerationOptions:
        stop = tuple(s for s in self.stop_sequences or () if s)
        return GenerationOptions(stop=stop) if stop else PLAIN


# -- responses --------------------------------------------------------------------------------------


def stop_reason(finish_reason: str) -> str:
    return _STOP_REASONS.get(finish_reason, finish_reason)


def _usage(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def message(
    message_id: str, *, text: str, stop_reason: str | None, usage: Usage | None, model: str = MODEL_ID
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if text or stop_reason is not None else [],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(usage),
    }


def message_of(answer: Collected) -> dict[str, Any]:
    """A whole answer (ChatService.collect) as one Messages response."""
    reason = CANCELLED if answer.stopped else stop_reason(answer.finish_reason)
    return message(answer.message_id, text=answer.text, stop_reason=reason, usage=answer.usage)


def sse(kind: str, data: dict[str, Any]) -> bytes:
    body = json.dumps({"type": kind, **data}, ensure_ascii=False, separators=(",", ":"))
    return f"event: {kind}\ndata: {body}\n\n".encode()


class MessageStream:
    """Renders one answer's events as Anthropic stream events (SSE bytes), in order."""

    def __init__(self, message_id: str, *, model: str = MODEL_ID) -> None:
        self.message_id = message_id
        self.model = model
        self.ended = False

    def render(self, event: ChatEvent) -> list[bytes]:
        if self.ended:
            return []
        if isinstance(event, StartEvent):
            start = message(self.message_id, text="", stop_reason=None, usage=None, model=self.model)
            block = {"index": 0, "content_block": {"type": "text", "text": ""}}
            return [sse("message_start", {"message": start}), sse("content_block_start", block)]
        if isinstance(event, TokenEvent):
            if not event.delta:
                return []
            return [
                sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": event.delta}})
            ]
        if not isinstance(event, DoneEvent | StoppedEvent | ErrorEvent):
            return []  # sources (and tool calls, which this route never asks for) have no Anthropic event
        self.ended = True
        if isinstance(event, ErrorEvent):
            return [sse("error", error_body(error_of(event)))]
        reason = stop_reason(event.finish_reason) if isinstance(event, DoneEvent) else CANCELLED
        output = event.usage.completion_tokens if isinstance(event, DoneEvent) else 0
        delta = {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": {"output_tokens": output}}
        return [
            sse("content_block_stop", {"index": 0}),
            sse("message_delta", delta),
            sse("message_stop", {}),
        ]


# -- errors -----------------------------------------------------------------------------------------

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(err: ChatbotError) -> dict[str, Any]:
    """Anthropic's error object; the message names the field at fault when there is one."""
    message = err.message
    errors = err.details.get("errors")
    if err.code == "validation_error" and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = f"{message} Invalid field: '{errors[0].get('loc')}'."
    return {"type": "error", "error": {"type": error_type(error_status(err)), "message": message}}
