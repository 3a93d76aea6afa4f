"""OpenAI's published chat schema as a test oracle: the OpenAPI document llm-comply ships (specs/openai_chat.json,
validated with jsonschema) plus the openai SDK's own pydantic models, in strict mode.

Every chat.completion and chat.completion.chunk the server renders goes through `check_completion` /
`check_chunk`. Our one value outside OpenAI's vocabulary, finish_reason "cancelled" (a stopped answer), is
the only thing `allow_cancelled` lets through; our extension field `sources` is allowed because OpenAI's
schema allows extra properties.
"""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema: null joins the type (and the enum, if any)."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


_DOCUMENT = _nullable(json.loads((files("llm_comply") / "specs" / "openai_chat.json").read_text()))
_REGISTRY: Registry[Any] = Registry().with_resource("urn:openai-chat", Resource(_DOCUMENT, DRAFT202012))
CANCELLED = "cancelled"


def schema_errors(obj: Any, name: str) -> list[str]:
    """Where `obj` breaks the spec's components/schemas/`name` (empty when it is valid)."""
    validator = Draft202012Validator(
        {"$ref": f"urn:openai-chat#/components/schemas/{name}"}, registry=_REGISTRY
    )
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def _without_cancelled(obj: dict[str, Any], allow_cancelled: bool) -> dict[str, Any]:
    if not allow_cancelled:
        return obj
    obj = copy.deepcopy(obj)
    for choice in obj.get("choices") or []:
        if choice.get("finish_reason") == CANCELLED:
            choice["finish_reason"] = "stop"
    return obj


def check_completion(obj: dict[str, Any], *, allow_cancelled: bool = False) -> ChatCompletion:
    """A non-streamed response: valid against CreateChatCompletionResponse and the SDK's strict model."""
    checked = _without_cancelled(obj, allow_cancelled)
    errors = schema_errors(checked, "CreateChatCompletionResponse")
    assert errors == [], errors
    return ChatCompletion.model_validate(checked, strict=True)


def check_chunk(obj: dict[str, Any], *, allow_cancelled: bool = False) -> ChatCompletionChunk:
    """One stream chunk: valid against CreateChatCompletionStreamResponse and the SDK's strict model."""
    checked = _without_cancelled(obj, allow_cancelled)
    errors = schema_errors(checked, "CreateChatCompletionStreamResponse")
    assert errors == [], errors
    return ChatCompletionChunk.model_validate(checked, strict=True)
