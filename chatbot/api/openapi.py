"""GET /openapi.json: the HTTP API as an OpenAPI 3.1 document, assembled from the wire models.

Request bodies are the JSON schemas (model_json_schema()) of the pydantic models the routes validate with
(wire.ChatBody, openai_wire.ChatCompletionBody, vercel_wire.UIChatBody, widget.WidgetTokenBody), so the
document cannot drift from what the server accepts. Responses are built as dicts by the routes; the small
documentation-only models below describe them, and tests/reliability/test_schemathesis.py checks real
responses against this document.

Why a hand-built dict rather than quart-schema: quart-schema describes a route through its own decorators
(@validate_request / @validate_response) that also take over validation and its error responses; adopting it
would re-plumb every route and our error bodies for the sake of a document. Here the routes stay as they are
and the document is assembled once per process from the same models they use.

The websocket (/v1/ws) is outside OpenAPI's reach; its frames are described under `x-websocket`.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, Field
from quart import Blueprint

from chatbot.api.auth import PUBLIC_ENDPOINTS
from chatbot.api.openai_wire import ChatCompletionBody
from chatbot.api.vercel_wire import UIChatBody
from chatbot.api.widget import WidgetTokenBody
from chatbot.api.wire import AskFrame, ChatBody, PingFrame, ResumeFrame, StopFrame

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
TENANT_PATTERN = r"^([A-Za-z0-9_\-.]{1,64})?$"  # empty: as if absent


# -- documentation-only response models (the routes build these shapes as dicts) -------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable snake_case code (validation_error, busy, upstream_timeout, ...).")
    message: str = Field(description="Public message; never exception text.")
    request_id: str = Field(description="Echo of X-Request-ID, or the id the server assigned.")
    retry_after: float | None = Field(None, description="Seconds to wait before retrying (also Retry-After).")
    details: dict[str, Any] | None = Field(
        None, description="Validation errors, or the ids of a started answer."
    )


class ErrorBody(BaseModel):
    """Every native error: {"error": {code, message, request_id, retry_after?, details?}}."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error, server_error, ...")
    code: str
    param: str | None = None


class OpenAIErrorBody(BaseModel):
    """Errors of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIErrorDetail


class UsageDoc(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SourceDoc(BaseModel):
    n: int = Field(description="The citation number: [n] in the answer.")
    doc_id: str
    source: str
    title: str
    heading_path: list[str]
    chunk_index: int
    text: str
    score: float


class ChatAnswer(BaseModel):
    """POST /v1/chat without streaming: the whole answer. A stopped answer has finish_reason 'stopped'."""

    message_id: str
    conversation_id: str
    answer: str
    sources: list[SourceDoc]
    finish_reason: str
    model: str | None = None
    usage: UsageDoc | None = None
    timings: dict[str, float] | None = None
    cached: bool | None = None
    stopped: bool | None = None


class StopResult(BaseModel):
    message_id: str
    stopped: bool = Field(description="False when the answer had already ended.")


class TurnDoc(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    message_id: str
    stopped: bool
    error: str | None
    created: float


class Conversation(BaseModel):
    conversation_id: str
    turns: list[TurnDoc]


class DocumentDoc(BaseModel):
    doc_id: str
    source: str
    title: str
    chunks: int
    version: str


class DocumentList(BaseModel):
    documents: list[DocumentDoc]


class IngestResultDoc(BaseModel):
    doc_id: str
    source: str
    title: str
    chunks: int
    written: int = Field(description="Chunks embedded and stored now (0 when the document was unchanged).")
    unchanged: bool


class IngestResults(BaseModel):
    documents: list[IngestResultDoc]


class DeleteResult(BaseModel):
    doc_id: str
    deleted_chunks: int


class Health(BaseModel):
    status: Literal["ok"]


class ReadyChecks(BaseModel):
    vector_store: bool
    embedder: str
    chat_model: str
    accepting: bool


class Ready(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: ReadyChecks


class ModelDoc(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelListDoc(BaseModel):
    object: Literal["list"]
    data: list[ModelDoc]


class CompletionMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    sources: list[SourceDoc]


class CompletionChoice(BaseModel):
    index: int
    message: CompletionMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    """POST /v1/chat/completions without streaming."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageDoc | None = None


class WidgetToken(BaseModel):
    token: str
    tenant: str
    origin: str
    expires_at: int
    expires_in: int


class LoopLag(BaseModel):
    """The serving loop's lag, in milliseconds, over the recent window."""

    running: bool
    p50_ms: float
    p99_ms: float
    max_ms: float
    tasks: int | None = Field(None, description="Live asyncio tasks on the serving loop (GET only).")


# -- assembly ----------------------------------------------------------------------------------------------


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    """Add `model` (and the models it uses) to components; return a $ref to it."""
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": REF.format(model=model.__name__)}


def _json(ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _text(media_type: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


def _param(name: str, where: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


def _sse(description: str, *, events: list[str] | None = None, with_ids: bool = False) -> dict[str, Any]:
    """A text/event-stream whose schema describes one event (as schemathesis and OpenAPI 3.2 read it)."""
    properties: dict[str, Any] = {"data": {"type": "string", "description": description}}
    if events is not None:
        properties["event"] = {"enum": events}
    if with_ids:
        properties["id"] = {"type": "string", "pattern": "^[0-9]+$", "description": "The event's seq."}
    schema = {"type": "object", "properties": properties, "required": ["data"], "additionalProperties": False}
    return {"text/event-stream": {"schema": schema}}


FRAME_TYPES = ["start", "sources", "token", "done", "stopped", "error"]
SSE = _sse("The same JSON as the websocket frame.", events=FRAME_TYPES, with_ids=True)
OPENAI_SSE = _sse('A chat.completion.chunk, {"error": ...}, or [DONE].')
UI_SSE = _sse("A UI message stream part, or [DONE].")
NOT_MODIFIED = {"description": "Not modified (If-None-Match matched the ETag)."}
_ERROR_TEXT = {
    400: "A malformed request (invalid_json, empty_message, invalid_tenant, ...).",
    401: "An API key is required (or the key or widget token is not valid).",
    403: "The credential lacks the role this route needs.",
    404: "Unknown id (or another tenant's).",
    413: "Body, message or file larger than the limits allow.",
    415: "Unsupported file type.",
    422: "The body does not match the schema (validation_error) or the file cannot be read.",
    429: "busy, rate_limited or quota_exceeded; see Retry-After.",
    502: "The model provider failed (upstream_unavailable, upstream_bad_response, upstream_auth).",
    503: "Rate limited upstream, vector store unavailable, or shutting down; see Retry-After.",
    504: "A stage ran past its deadline (embed_timeout, retrieve_timeout, first_token_timeout, ...).",
}
UPSTREAM = (502, 503, 504)


class _Builder:
    """Collects paths and component schemas; every operation is named by its Quart endpoint."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self.paths: dict[str, dict[str, Any]] = {}
        self.error = self.schema(ErrorBody)
        self.openai_error = self.schema(OpenAIErrorBody)

    def schema(self, model: type[BaseModel]) -> dict[str, str]:
        return _schema(model, self.components)

    def body(self, model: type[BaseModel], description: str) -> dict[str, Any]:
        content = {"application/json": {"schema": self.schema(model)}}
        return {"required": True, "description": description, "content": content}

    def route(
        self,
        method: str,
        path: str,
        endpoint: str,
        summary: str,
        responses: dict[str, Any],
        *,
        errors: tuple[int, ...] = (),
        openai_errors: bool = False,
        parameters: tuple[dict[str, Any], ...] = (),
        request_body: dict[str, Any] | None = None,
    ) -> None:
        """One operation. Routes outside auth.PUBLIC_ENDPOINTS take a credential (optional while no API keys
        are configured) and the tenant header, so they may also answer 400 (invalid_tenant), 401, 403, 429."""
        params = list(parameters)
        public = endpoint in PUBLIC_ENDPOINTS
        statuses = set(errors)
        if not public:
            params.append(
                _param(
                    "X-Chatbot-Tenant",
                    "header",
                    {"type": "string", "pattern": TENANT_PATTERN},
                    "The tenant to act for (open access, or an admin key); else the key's tenant.",
                )
            )
            statuses |= {400, 401, 403, 429}
        ref = self.openai_error if openai_errors else self.error
        op: dict[str, Any] = {
            "operationId": endpoint,
            "summary": summary,
            "parameters": params,
            "responses": {**responses, **{str(s): _json(ref, _ERROR_TEXT[s]) for s in sorted(statuses)}},
        }
        if not public:
            op["security"] = [{}, {"bearer": []}, {"apiKey": []}]
        if request_body is not None:
            op["requestBody"] = request_body
        self.paths.setdefault(path, {})[method] = op


def build_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every HTTP route."""
    b = _Builder()
    message_id = _param("message_id", "path", {"type": "string", "minLength": 1}, "An answer's id.")
    b.route(
        "get", "/healthz", "http.healthz", "Alive.", {"200": _json(b.schema(Health), "The process is up.")}
    )
    ready = b.schema(Ready)
    b.route(
        "get",
        "/readyz",
        "http.readyz",
        "Ready: vector store reachable, collection present, models loaded, accepting answers.",
        {"200": _json(ready, "Ready."), "503": _json(ready, "Not ready.")},
    )
    b.route(
        "post",
        "/v1/chat",
        "http.chat",
        "Ask: one JSON answer, or server-sent events with stream=true or Accept: text/event-stream.",
        {
            "200": {
                "description": "The answer (JSON), or its events (SSE id/event/data, as websocket frames).",
                "content": {"application/json": {"schema": b.schema(ChatAnswer)}, **SSE},
            }
        },
        errors=(404, 413, 422, *UPSTREAM),
        request_body=b.body(ChatBody, "The message; limits.max_frame_bytes at most."),
    )
    b.route(
        "get",
        "/v1/chat/{message_id}/events",
        "http.chat_events",
        "Resume an answer's SSE stream after Last-Event-ID (or ?after=N).",
        {"200": {"description": "The answer's events after that seq.", "content": SSE}},
        errors=(404,),
        parameters=(
            message_id,
            _param("after", "query", {"type": "integer", "minimum": 0}, "Replay the events after this seq."),
            _param("Last-Event-ID", "header", {"type": "string", "pattern": "^[0-9]+$"}, "As `after`."),
        ),
    )
    b.route(
        "post",
        "/v1/chat/{message_id}/stop",
        "http.chat_stop",
        "Stop an answer: cancels it and closes the model's stream.",
        {"200": _json(b.schema(StopResult), "Stopped, or had already ended.")},
        errors=(404,),
        parameters=(message_id,),
    )
    b.route(
        "get",
        "/v1/conversations/{conversation_id}",
        "http.conversation",
        "A conversation's saved turns (stopped answers have stopped=true, failed ones their error).",
        {"200": _json(b.schema(Conversation), "The turns, oldest first.")},
        errors=(404,),
        parameters=(_param("conversation_id", "path", {"type": "string", "minLength": 1}),),
    )
    b.route(
        "get",
        "/v1/documents",
        "http.list_documents",
        "The tenant's documents.",
        {"200": _json(b.schema(DocumentList), "Documents.")},
    )
    upload = {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}},
        "required": ["file"],
    }
    b.route(
        "post",
        "/v1/documents",
        "http.upload_documents",
        "Ingest documents (.md .txt .html .pdf); idempotent: a changed file replaces its old one.",
        {"201": _json(b.schema(IngestResults), "One result per file.")},
        errors=(413, 415, 422, *UPSTREAM),
        request_body={"required": True, "content": {"multipart/form-data": {"schema": upload}}},
    )
    b.route(
        "delete",
        "/v1/documents/{doc_id}",
        "http.delete_document",
        "Delete a document and all its chunks.",
        {"200": _json(b.schema(DeleteResult), "Deleted.")},
        errors=(404,),
        parameters=(_param("doc_id", "path", {"type": "string", "minLength": 1}),),
    )
    b.route(
        "get",
        "/v1/models",
        "openai_compat.list_models",
        "OpenAI-compatible model list.",
        {"200": _json(b.schema(ModelListDoc), "The one model, 'chatbot'.")},
        openai_errors=True,
    )
    b.route(
        "get",
        "/v1/models/{model_id}",
        "openai_compat.get_model",
        "One model.",
        {"200": _json(b.schema(ModelDoc), "The model.")},
        errors=(404,),
        openai_errors=True,
        parameters=(_param("model_id", "path", {"type": "string", "minLength": 1}),),
    )
    b.route(
        "post",
        "/v1/chat/completions",
        "openai_compat.chat_completions",
        "OpenAI-compatible chat completions (model 'chatbot'); the client sends its history.",
        {
            "200": {
                "description": "A chat.completion, or with stream=true chat.completion.chunk events.",
                "content": {"application/json": {"schema": b.schema(ChatCompletion)}, **OPENAI_SSE},
            }
        },
        errors=(404, 413, *UPSTREAM),
        openai_errors=True,
        request_body=b.body(ChatCompletionBody, "limits.max_chat_body_bytes at most."),
    )
    b.route(
        "post",
        "/v1/ui/chat",
        "vercel.ui_chat",
        "The AI SDK UI message stream (useChat); the client sends its history.",
        {"200": {"description": "UI message stream parts, ending with [DONE].", "content": UI_SSE}},
        errors=(413, 422),
        request_body=b.body(UIChatBody, "limits.max_chat_body_bytes at most."),
    )
    b.route(
        "post",
        "/v1/widget/tokens",
        "widget.create_widget_token",
        "Mint a widget token for one site origin.",
        {"200": _json(b.schema(WidgetToken), "The token.")},
        errors=(413, 422),
        request_body=b.body(WidgetTokenBody, "The origin and an optional lifetime."),
    )
    b.route(
        "get",
        "/widget.js",
        "widget.widget_js",
        "The embeddable widget.",
        {"200": _text("text/javascript", "JavaScript."), "304": NOT_MODIFIED},
    )
    b.route(
        "get",
        "/",
        "widget.demo_page",
        "The demo page.",
        {"200": _text("text/html", "HTML."), "304": NOT_MODIFIED},
    )
    b.route(
        "get",
        "/metrics",
        "metrics.metrics",
        "Prometheus metrics of this process.",
        {"200": _text("text/plain", "Text exposition format.")},
    )
    lag = b.schema(LoopLag)
    b.route(
        "get",
        "/debug/looplag",
        "debug.looplag",
        "Event-loop lag of the serving loop.",
        {"200": _json(lag, "")},
    )
    b.route(
        "post",
        "/debug/looplag/reset",
        "debug.looplag_reset",
        "Forget the lag samples.",
        {"200": _json(lag, "")},
    )
    b.route(
        "get",
        "/openapi.json",
        "openapi.openapi",
        "This document.",
        {
            "200": {
                "description": "OpenAPI 3.1.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatbot",
            "version": _version(),
            "description": 'Async RAG chat backend. Errors are {"error": {code, message, request_id}} (the '
            "OpenAI-compatible routes use OpenAI's error shape). Never a 500 for a client's mistake.",
        },
        "paths": b.paths,
        "components": {
            "schemas": b.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (cb_...)."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "x-websocket": _websocket(),
    }


def _websocket() -> dict[str, Any]:
    frames: dict[str, Any] = {}
    client = {m.__name__: _schema(m, frames) for m in (AskFrame, StopFrame, ResumeFrame, PingFrame)}
    return {
        "path": "/v1/ws",
        "client_frames": client,
        "schemas": frames,
        "handshake_refusals": {
            "403": "origin_not_allowed: Origin not in server.allowed_origins (or not the widget token's)",
            "401": "a forged or expired widget token",
            "429": "busy: too many open connections (per process, or per client IP)",
        },
        "close_codes": {
            "1009": "a frame larger than the server's websocket message limit",
            "1012": "service restart (graceful shutdown)",
            "1013": "try again later (the client did not read for stream.send_timeout)",
        },
        "error_frames": "A bad frame gets {type: error, code, message} and the connection stays usable.",
    }


def _version() -> str:
    try:
        return metadata.version("chatbot")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0"


@functools.cache
def openapi_document() -> dict[str, Any]:
    """Built once per process: the models do not change while it runs."""
    return build_document()


@bp.get("/openapi.json")
async def openapi() -> Any:
    return openapi_document()
