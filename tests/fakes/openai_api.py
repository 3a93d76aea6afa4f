"""The OpenAI wire shapes the fake speaks: /v1/embeddings and /v1/chat/completions (plain and SSE).

Tool calling: offered `tools` (and tool_choice not "none") with no tool result after the last user message,
the fake calls the chosen tool (or the first) with TOOL_ARGUMENTS, streamed as OpenAI does (the id and name
first, then the arguments in fragments) with finish_reason "tool_calls"; once the tool results are in the
messages, it answers with the scripted reply (an agent loop's two turns)."""

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


TOOL_ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'
TOOL_CALL_ID = "call_fake_1"


def tool_call_for(body: dict[str, Any]) -> str | None:
    """The name of the tool the fake calls for this request, or None when it answers with text."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    messages = body.get("messages") or []
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    if any(m.get("role") == "tool" for m in messages[last_user + 1 :]):
        return None
    if isinstance(choice, dict):
        return str(choice["function"]["name"])
    return str(tools[0]["function"]["name"])


def tool_call_frames(body: dict[str, Any], name: str, prompt_tokens: int) -> list[Frame]:
    model = str(body.get("model", ""))
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    head = {"index": 0, "id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": ""}}
    middle = len(TOOL_ARGUMENTS) // 2
    fragments = [TOOL_ARGUMENTS[:middle], TOOL_ARGUMENTS[middle:]]
    frames: list[Frame] = [
        ("meta", _event(_chunk(model, {"role": "assistant", "content": None}, with_usage=usage))),
        ("meta", _event(_chunk(model, {"tool_calls": [head]}, with_usage=usage))),
    ]
    frames += [
        (
            "meta",
            _event(
                _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": f}}]}, with_usage=usage)
            ),
        )
        for f in fragments
    ]
    frames.append(("meta", _event(_chunk(model, {}, "tool_calls", with_usage=usage))))
    if usage:
        final = _chunk(model, {}, with_usage=True, usage=_usage(prompt_tokens, 9))
        final["choices"] = []
        frames.append(("meta", _event(final)))
    frames.append(("meta", b"data: [DONE]\n\n"))
    return frames


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
    if (tool := tool_call_for(body)) is not None:
        return tool_call_frames(body, tool, prompt_tokens)
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
