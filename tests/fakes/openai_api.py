"""The OpenAI wire shapes the fake speaks: /v1/embeddings and /v1/chat/completions (plain and SSE)."""

from __future__ import annotations

import base64
import json
import struct
import time
from typing import Any

from .scripting import embed_text

Frame = tuple[str, bytes]  # ("meta" | "token", the bytes of one SSE event)

MALFORMED = b'data: {"id": "chatcmpl-fake", "choices": [{"delta": {"content": "oops"\n\n'

_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("invalid_request_error", "Incorrect API key provided."),
    403: ("invalid_request_error", "You are not allowed to sample from this model."),
    404: ("invalid_request_error", "The model does not exist."),
    429: ("rate_limit_exceeded", "Rate limit reached for requests."),
}


def error_body(status: int) -> dict[str, Any]:
    kind, message = _ERRORS.get(
        status, ("server_error", "The server had an error while processing your request.")
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def embeddings(body: dict[str, Any], dimensions: int, *, reverse: bool = False) -> dict[str, Any]:
    inputs = body["input"]
    texts: list[str] = [inputs] if isinstance(inputs, str) else list(inputs)
    dims = int(body.get("dimensions") or dimensions)
    as_base64 = body.get("encoding_format") == "base64"
    data: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        vector = embed_text(text, dims)
        encoded: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    if reverse:  # the API promises `index`, not order; a fake that reverses proves clients sort
        data.reverse()
    words = sum(len(t.split()) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", ""),
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }


def _chunk(
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    usage: Any = None,
    with_usage: bool,
) -> dict[str, Any]:
    """With include_usage every chunk carries `usage` (null until the last one); without it, none does."""
    chunk: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage:
        chunk["usage"] = usage
    return chunk


def _event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def token_event(model: str, text: str) -> bytes:
    return _event(_chunk(model, {"content": text}, with_usage=False))


def chat_frames(
    body: dict[str, Any],
    pieces: list[str],
    prompt_tokens: int,
    finish_reason: str,
    *,
    send_usage: bool = True,
) -> list[Frame]:
    model = str(body.get("model", ""))
    usage = send_usage and bool((body.get("stream_options") or {}).get("include_usage"))
    frames: list[Frame] = [
        ("meta", _event(_chunk(model, {"role": "assistant", "content": ""}, with_usage=usage)))
    ]
    frames += [("token", _event(_chunk(model, {"content": p}, with_usage=usage))) for p in pieces]
    frames.append(("meta", _event(_chunk(model, {}, finish_reason, with_usage=usage))))
    if usage:
        final = _chunk(model, {}, with_usage=True, usage=_usage(prompt_tokens, len(pieces)))
        final["choices"] = []
        frames.append(("meta", _event(final)))
    frames.append(("meta", b"data: [DONE]\n\n"))
    return frames


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    body: dict[str, Any], pieces: list[str], prompt_tokens: int, finish_reason: str
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
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
