"""The AI SDK UI message stream (AI SDK 5+, what useChat reads), rendered from our typed events. Pure.

Protocol (ai-sdk.dev/docs/ai-sdk-ui/stream-protocol): server-sent events `data: <json>`, the response header
`x-vercel-ai-ui-message-stream: v1`, the stream ended by `data: [DONE]`. One answer is:

    start            {messageId}                       our message_id (POST /v1/chat/{id}/stop stops it)
    source-document  {sourceId, mediaType, title, filename}   one per source, before the text; sourceId is
                                                       the citation number n of "[n]" in the text
    text-start / text-delta {delta} / text-end         one text part, id "text-<message_id>"
    finish {messageMetadata: {finishReason, usage}}  |  abort (stopped)  |  error {errorText}
    [DONE]

AI SDK 5 parses every part as a strict object (unknown keys are an error), so only the fields of its schema
are sent: the newer abort.reason and finish.finishReason are left out, and the finish reason and token usage
travel as message metadata.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatbot.api.streaming import SSE_HEADERS
from chatbot.api.wire import FILTER_DESCRIPTION
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
)
from chatbot.providers.base import ChatMessage
from chatbot.stores.base import MetadataFilter

UI_STREAM_HEADERS = {**SSE_HEADERS, "x-vercel-ai-ui-message-stream": "v1"}
DONE = b"data: [DONE]\n\n"
_MEDIA_TYPES = {
    "md": "text/markdown",
    "markdown": "text/markdown",
    "txt": "text/plain",
    "html": "text/html",
    "htm": "text/html",
    "pdf": "application/pdf",
}

# -- requests (useChat's body: {id, messages: [{id, role, parts: [{type: "text", text}, ...]}], ...}) ----


class UIPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = []
    content: str | None = None  # AI SDK 4 messages; used when there are no parts

    def text(self) -> str:
        """The message's text parts (other parts: files, sources, reasoning, tools, data are skipped)."""
        texts = [p.text for p in self.parts if p.type == "text" and p.text]
        if not texts and not self.parts and self.content:
            return self.content
        return "\n".join(texts)


class UIChatBody(BaseModel):
    """POST /v1/ui/chat. `messages` and the optional metadata `filter` (useChat's `body` option) are used;
    the chat `id`, `trigger` and other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    messages: list[UIMessage]
    filter: MetadataFilter | None = Field(None, description=FILTER_DESCRIPTION)

    def chat_messages(self) -> list[ChatMessage]:
        return [ChatMessage(m.role, m.text()) for m in self.messages]


# -- the stream ---------------------------------------------------------------------------------------


def sse(part: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def media_type(source: str) -> str:
    _, dot, suffix = source.rpartition(".")
    return _MEDIA_TYPES.get(suffix.lower(), "application/octet-stream") if dot else "application/octet-stream"


def source_part(source: Source) -> dict[str, Any]:
    return {
        "type": "source-document",
        "sourceId": str(source.n),
        "mediaType": media_type(source.source),
        "title": source.title or source.source,
        "filename": source.source,
    }


class UIStream:
    """Renders one answer's events as UI message stream parts (SSE bytes), in order."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.text_id = f"text-{message_id}"
        self.text_open = False
        self.ended = False

    def render(self, event: ChatEvent) -> list[bytes]:
        if self.ended:
            return []
        if isinstance(event, StartEvent):
            return [sse({"type": "start", "messageId": self.message_id})]
        if isinstance(event, SourcesEvent):
            return [sse(source_part(s)) for s in event.sources]
        if isinstance(event, TokenEvent):
            if not event.delta:
                return []
            out = []
            if not self.text_open:
                self.text_open = True
                out.append(sse({"type": "text-start", "id": self.text_id}))
            out.append(sse({"type": "text-delta", "id": self.text_id, "delta": event.delta}))
            return out
        if isinstance(event, ToolCallEvent):
            return []  # never produced here: useChat asks send no tools (the OpenAI route's feature)
        self.ended = True
        out = [sse({"type": "text-end", "id": self.text_id})] if self.text_open else []
        if isinstance(event, DoneEvent):
            usage = event.usage
            metadata = {
                "finishReason": event.finish_reason,
                "usage": {
                    "inputTokens": usage.prompt_tokens,
                    "outputTokens": usage.completion_tokens,
                    "totalTokens": usage.total_tokens,
                },
            }
            out.append(sse({"type": "finish", "messageMetadata": metadata}))
        elif isinstance(event, StoppedEvent):
            out.append(sse({"type": "abort"}))
        elif isinstance(event, ErrorEvent):
            out.append(sse({"type": "error", "errorText": event.message}))
        return [*out, DONE]
