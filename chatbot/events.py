"""The typed events an answer produces: one pydantic discriminated union (on `type`).

The same models serve the event log's stored form (stores/event_codec.py), the native wire frames
(api/wire.py) and the JSON schema of those frames; nothing here knows a transport. Events are frozen
models built with keywords; Source and Usage are frozen pydantic dataclasses (value objects that are also
built positionally and copied with dataclasses.replace).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FieldSerializationInfo, TypeAdapter, field_serializer
from pydantic.dataclasses import dataclass

WIRE = {"wire": True}
"""Serialisation context of the wire form: scores rounded to 6 places. Without it a dump is lossless."""


def _on_wire(info: FieldSerializationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("wire"))


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Source:
    """One retrieved passage, numbered as the answer cites it ([n]): its document (title, source), where it
    is in it (heading path; pages for PDFs and slides; the chunk's character span in the extracted text,
    None when the loader does not know) and its text. GET /v1/documents/{doc_id}/chunks/{chunk_index}
    returns it with its neighbours."""

    n: int
    doc_id: str
    source: str
    title: str
    heading_path: tuple[str, ...]
    chunk_index: int
    text: str
    score: float
    page_start: int | None = None
    page_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None

    @field_serializer("score")
    def _score(self, score: float, info: FieldSerializationInfo) -> float:
        return round(score, 6) if _on_wire(info) else score

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Source:
        """The inverse of to_dict (also reads a stored chunk payload plus `n` and `score`)."""
        return cls(
            n=int(data.get("n", 0)),
            doc_id=str(data.get("doc_id", "")),
            source=str(data.get("source", "")),
            title=str(data.get("title", "")),
            heading_path=tuple(data.get("heading_path") or ()),
            chunk_index=int(data.get("chunk_index", 0)),
            text=str(data.get("text", "")),
            score=float(data.get("score", 0.0)),
            page_start=_optional_int(data.get("page_start")),
            page_end=_optional_int(data.get("page_end")),
            char_start=_optional_int(data.get("char_start")),
            char_end=_optional_int(data.get("char_end")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (JSON-ready, score rounded; pages and character span only when known)."""
        out: dict[str, Any] = _SOURCE.dump_python(self, mode="json", context=WIRE, exclude_none=True)
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


_SOURCE: TypeAdapter[Source] = TypeAdapter(Source)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StartEvent(_Event):
    """First event of every answer: who it is and what conversation it belongs to."""

    type: Literal["start"] = "start"
    message_id: str
    conversation_id: str


class SourcesEvent(_Event):
    """The passages the answer may cite. `no_relevant_sources`: retrieval found nothing relevant enough
    (rag/confidence.py), so `sources` is empty and the answer says the documents don't cover the question."""

    type: Literal["sources"] = "sources"
    sources: tuple[Source, ...]
    no_relevant_sources: bool = False


class TokenEvent(_Event):
    type: Literal["token"] = "token"
    delta: str


class ToolCallEvent(_Event):
    """The model asks the client to call a function (OpenAI-compatible clients that sent `tools`); the
    answer then ends with finish_reason 'tool_calls'. `arguments` is the JSON text the model wrote."""

    type: Literal["tool_call"] = "tool_call"
    index: int
    id: str
    name: str
    arguments: str


class DoneEvent(_Event):
    """The answer finished normally. finish_reason is 'stop', 'length' or 'tool_calls'."""

    type: Literal["done"] = "done"
    usage: Usage
    timings: dict[str, float]
    finish_reason: str = "stop"
    model: str = ""
    cached: bool = False
    trace_id: str | None = None  # the turn's OpenTelemetry trace id (32 hex digits) while tracing is on

    @field_serializer("usage")
    def _usage(self, usage: Usage, info: FieldSerializationInfo) -> dict[str, int]:
        """On the wire usage carries total_tokens too; stored, only what it is built from."""
        if _on_wire(info):
            return usage.to_dict()
        return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


class StoppedEvent(_Event):
    """The answer was stopped on request (or abandoned after a disconnect); what was generated is kept."""

    type: Literal["stopped"] = "stopped"
    reason: str = "stop_requested"


class ErrorEvent(_Event):
    """The answer failed. Always the last event of its answer; never followed by done."""

    type: Literal["error"] = "error"
    code: str
    message: str
    retry_after: float | None = None
    param: str | None = None  # the request field at fault, when one is (unsupported_option)


ChatEvent = StartEvent | SourcesEvent | TokenEvent | ToolCallEvent | DoneEvent | StoppedEvent | ErrorEvent
AnyEvent = Annotated[ChatEvent, Field(discriminator="type")]
EVENTS: TypeAdapter[ChatEvent] = TypeAdapter(AnyEvent)
"""Validates and dumps any event by its `type` (the event log codec and the wire frames use it)."""
TERMINAL_TYPES = frozenset({"done", "stopped", "error"})


def is_terminal(event: ChatEvent) -> bool:
    return event.type in TERMINAL_TYPES
