"""A lossless JSON codec for ChatEvents, for logs kept outside the process (Redis Streams).

decode_event(encode_event(e)) == e for every event: floats keep every bit (json writes repr), tuples come
back as tuples, None stays None, and text with lone surrogates (a model may split a surrogate pair across
chunks) survives because the UTF-8 step uses surrogatepass. This is storage, not a wire format: transports
keep rendering frames with api/wire.py.
"""

from __future__ import annotations

import json
from typing import Any

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


class UndecodableEvent(ValueError):
    """Stored bytes that are not an event this codec wrote."""


def encode_event(event: ChatEvent) -> bytes:
    text = json.dumps(_to_obj(event), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def decode_event(data: bytes | str) -> ChatEvent:
    try:
        text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
        obj = json.loads(text)
        return _from_obj(obj)
    except (ValueError, KeyError, TypeError) as exc:
        raise UndecodableEvent(f"not a stored chat event: {exc}") from exc


def _to_obj(event: ChatEvent) -> dict[str, Any]:
    if isinstance(event, StartEvent):
        return {"type": event.type, "message_id": event.message_id, "conversation_id": event.conversation_id}
    if isinstance(event, SourcesEvent):
        return {"type": event.type, "sources": [_source_to_obj(s) for s in event.sources]}
    if isinstance(event, TokenEvent):
        return {"type": event.type, "delta": event.delta}
    if isinstance(event, DoneEvent):
        return {
            "type": event.type,
            "usage": [event.usage.prompt_tokens, event.usage.completion_tokens],
            "timings": event.timings,
            "finish_reason": event.finish_reason,
            "model": event.model,
            "cached": event.cached,
        }
    if isinstance(event, StoppedEvent):
        return {"type": event.type, "reason": event.reason}
    return {
        "type": event.type,
        "code": event.code,
        "message": event.message,
        "retry_after": event.retry_after,
    }


def _source_to_obj(s: Source) -> list[Any]:
    return [s.n, s.doc_id, s.source, s.title, list(s.heading_path), s.chunk_index, s.text, s.score]


def _from_obj(obj: dict[str, Any]) -> ChatEvent:
    kind = obj["type"]
    if kind == "start":
        return StartEvent(message_id=_str(obj["message_id"]), conversation_id=_str(obj["conversation_id"]))
    if kind == "sources":
        return SourcesEvent(sources=tuple(_source_from_obj(s) for s in obj["sources"]))
    if kind == "token":
        return TokenEvent(delta=_str(obj["delta"]))
    if kind == "done":
        prompt, completion = obj["usage"]
        timings = obj["timings"]
        if not isinstance(timings, dict):
            raise TypeError("timings is not an object")
        return DoneEvent(
            usage=Usage(int(prompt), int(completion)),
            timings=timings,
            finish_reason=_str(obj["finish_reason"]),
            model=_str(obj["model"]),
            cached=bool(obj["cached"]),
        )
    if kind == "stopped":
        return StoppedEvent(reason=_str(obj["reason"]))
    if kind == "error":
        retry_after = obj["retry_after"]
        return ErrorEvent(
            code=_str(obj["code"]),
            message=_str(obj["message"]),
            retry_after=None if retry_after is None else float(retry_after),
        )
    raise ValueError(f"unknown event type {kind!r}")


def _source_from_obj(raw: list[Any]) -> Source:
    n, doc_id, source, title, heading_path, chunk_index, text, score = raw
    return Source(
        n=int(n),
        doc_id=_str(doc_id),
        source=_str(source),
        title=_str(title),
        heading_path=tuple(_str(h) for h in heading_path),
        chunk_index=int(chunk_index),
        text=_str(text),
        score=float(score),
    )


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
