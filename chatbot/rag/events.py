"""The typed events an answer produces. Transports serialise them; nothing here knows a wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Source:
    """One retrieved passage, numbered as the answer cites it ([n])."""

    n: int
    doc_id: str
    source: str
    title: str
    heading_path: tuple[str, ...]
    chunk_index: int
    text: str
    score: float

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
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "heading_path": list(self.heading_path),
            "chunk_index": self.chunk_index,
            "text": self.text,
            "score": round(self.score, 6),
        }


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


@dataclass(frozen=True, slots=True)
class StartEvent:
    """First event of every answer: who it is and what conversation it belongs to."""

    message_id: str
    conversation_id: str
    type: str = field(default="start", init=False)


@dataclass(frozen=True, slots=True)
class SourcesEvent:
    sources: tuple[Source, ...]
    type: str = field(default="sources", init=False)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    delta: str
    type: str = field(default="token", init=False)


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The answer finished normally. finish_reason is 'stop' or 'length'."""

    usage: Usage
    timings: dict[str, float]
    finish_reason: str = "stop"
    model: str = ""
    cached: bool = False
    type: str = field(default="done", init=False)


@dataclass(frozen=True, slots=True)
class StoppedEvent:
    """The answer was stopped on request (or abandoned after a disconnect); what was generated is kept."""

    reason: str = "stop_requested"
    type: str = field(default="stopped", init=False)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The answer failed. Always the last event of its answer; never followed by done."""

    code: str
    message: str
    retry_after: float | None = None
    type: str = field(default="error", init=False)


ChatEvent = StartEvent | SourcesEvent | TokenEvent | DoneEvent | StoppedEvent | ErrorEvent
TERMINAL_TYPES = frozenset({"done", "stopped", "error"})


def is_terminal(event: ChatEvent) -> bool:
    return event.type in TERMINAL_TYPES
