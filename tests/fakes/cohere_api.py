"""The Cohere v2 wire shapes the fake speaks: /v2/embed, /v2/rerank and /v2/chat (plain and SSE events)."""

from __future__ import annotations

import json
from typing import Any

from .scripting import embed_text

Frame = tuple[str, bytes]  # ("meta" | "token", the bytes of one SSE event)

MALFORMED = b'event: content-delta\ndata: {"type": "content-delta", "index": 0, "delta": {"message"\n\n'

_FINISH = {"stop": "COMPLETE", "length": "MAX_TOKENS", "tool_calls": "TOOL_CALL"}
_META = {"api_version": {"version": "2"}}


def error_body(status: int) -> dict[str, Any]:
    messages = {
        400: "invalid request",
        401: "invalid api token",
        403: "forbidden",
        404: "model not found",
        429: "You are using a Trial key, which is limited to 10 API calls / minute.",
    }
    return {"message": messages.get(status, "internal server error")}


def embed(body: dict[str, Any], dimensions: int) -> tuple[int, dict[str, Any]]:
    if not body.get("input_type"):
        return 400, {"message": "invalid request: input_type is required for embed-v3 and newer models"}
    texts: list[str] = list(body.get("texts") or [])
    dims = int(body.get("output_dimension") or dimensions)
    types = body.get("embedding_types") or ["float"]
    vectors = [embed_text(text, dims) for text in texts]
    embeddings: dict[str, Any] = {}
    if "float" in types:
        embeddings["float"] = vectors
    words = sum(len(t.split()) for t in texts)
    return 200, {
        "id": "embed-fake",
        "response_type": "embeddings_by_type",
        "embeddings": embeddings,
        "texts": texts,
        "meta": {**_META, "billed_units": {"input_tokens": words}},
    }


def rerank(body: dict[str, Any]) -> dict[str, Any]:
    query = embed_text(str(body.get("query", "")), 256)
    documents = [d if isinstance(d, str) else str(d.get("text", "")) for d in body.get("documents") or []]
    scored = []
    for index, document in enumerate(documents):
        cosine = sum(q * d for q, d in zip(query, embed_text(document, 256), strict=True))
        scored.append((round((1.0 + cosine) / 2.0, 6), index))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    top_n = int(body.get("top_n") or len(scored))
    return {
        "id": "rerank-fake",
        "results": [{"index": index, "relevance_score": score} for score, index in scored[:top_n]],
        "meta": {**_META, "billed_units": {"search_units": 1}},
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    counts = {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}
    return {"billed_units": counts, "tokens": counts}


def _event(obj: dict[str, Any]) -> bytes:
    return b"event: " + str(obj["type"]).encode() + b"\ndata: " + json.dumps(obj).encode() + b"\n\n"


def token_event(text: str) -> bytes:
    return _event({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}})


def chat_frames(
    pieces: list[str], prompt_tokens: int, finish_reason: str, *, send_usage: bool = True
) -> list[Frame]:
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    frames: list[Frame] = [
        ("meta", _event({"id": "chat-fake", "type": "message-start", "delta": {"message": start}})),
        (
            "meta",
            _event(
                {
                    "type": "content-start",
                    "index": 0,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}},
                }
            ),
        ),
    ]
    frames += [("token", token_event(p)) for p in pieces]
    frames.append(("meta", _event({"type": "content-end", "index": 0})))
    end: dict[str, Any] = {"finish_reason": _FINISH.get(finish_reason, finish_reason)}
    if send_usage:
        end["usage"] = _usage(prompt_tokens, len(pieces))
    frames.append(("meta", _event({"type": "message-end", "delta": end})))
    return frames


def chat_response(pieces: list[str], prompt_tokens: int, finish_reason: str) -> dict[str, Any]:
    return {
        "id": "chat-fake",
        "finish_reason": _FINISH.get(finish_reason, finish_reason),
        "message": {"role": "assistant", "content": [{"type": "text", "text": "".join(pieces)}]},
        "usage": _usage(prompt_tokens, len(pieces)),
    }


def prompt_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict)]
    return " ".join(parts)
