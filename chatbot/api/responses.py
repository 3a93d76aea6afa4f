"""Response models: what each route answers, with the real constraints (lengths, counts, enums), declared on
the route (chatbot.api.routes.route(response=...)) and published in /openapi.json.

The routes still build these shapes as dicts (their bodies belong to the transport modules); the contract is
enforced from the outside: tests/reliability/test_schemathesis.py validates real responses against the
document built from these models, and tests/transport/test_routes.py validates sample responses against the
models themselves. Request models stay next to their wire format (wire.py, openai_requests.py, vercel_wire.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatbot.api.openai_requests import MODEL_ID
from chatbot.api.routes import EventStream

NonEmpty = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=0)]
AnswerId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")]
ErrorCode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ----------------------------------------------------------------------------------------------


class ErrorDetail(_Reply):
    code: ErrorCode = Field(
        description="Stable snake_case code (validation_error, busy, upstream_timeout, ...)."
    )
    message: NonEmpty = Field(description="Public message; never exception text.")
    request_id: str = Field(
        min_length=1, max_length=64, description="Echo of X-Request-ID, or the id the server assigned."
    )
    retry_after: float | None = Field(
        None, ge=0, description="Seconds to wait before retrying (also Retry-After)."
    )
    details: dict[str, Any] | None = Field(
        None, description="Validation errors, or the ids of a started answer."
    )


class ErrorBody(_Reply):
    """Every native error: {"error": {code, message, request_id, retry_after?, details?}}."""

    error: ErrorDetail


class OpenAIErrorDetail(_Reply):
    message: NonEmpty
    type: Literal[
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "rate_limit_error",
        "server_error",
    ]
    code: ErrorCode
    param: str | None = None


class OpenAIErrorBody(_Reply):
    """Errors of the OpenAI-compatible routes, in OpenAI's shape."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(_Reply):
    type: Literal[
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
    ]
    message: NonEmpty


class AnthropicErrorBody(_Reply):
    """Errors of the Anthropic-compatible route, in Anthropic's shape."""

    type: Literal["error"]
    error: AnthropicErrorDetail


# -- answers ---------------------------------------------------------------------------------------------


class UsageDoc(_Reply):
    prompt_tokens: Count
    completion_tokens: Count
    total_tokens: Count


class SourceDoc(_Reply):
    n: int = Field(ge=1, description="The citation number: [n] in the answer.")
    doc_id: NonEmpty
    source: str
    title: str
    heading_path: list[str]
    chunk_index: Count
    text: str
    score: float
    page_start: int | None = Field(None, ge=1, description="First page (PDFs) or slide of the chunk.")
    page_end: int | None = Field(None, ge=1, description="Last page or slide of the chunk.")
    char_start: int | None = Field(None, ge=0, description="The chunk's span in the extracted text.")
    char_end: int | None = Field(None, ge=0)


class ChatAnswer(_Reply):
    """POST /v1/chat without streaming: the whole answer. A stopped answer has finish_reason 'stopped'."""

    message_id: AnswerId
    conversation_id: AnswerId
    answer: str
    sources: list[SourceDoc]
    finish_reason: NonEmpty = Field(description="stop, length, stopped, or the provider's own reason.")
    model: str | None = None
    usage: UsageDoc | None = None
    timings: dict[str, float] | None = None
    cached: bool | None = None
    stopped: bool | None = None


class StopResult(_Reply):
    message_id: AnswerId
    stopped: bool = Field(description="False when the answer had already ended.")


class TurnDoc(_Reply):
    role: Literal["user", "assistant"]
    content: str
    message_id: str
    stopped: bool
    error: str | None
    created: float


class Conversation(_Reply):
    conversation_id: AnswerId
    turns: list[TurnDoc]


# -- documents -------------------------------------------------------------------------------------------


class DocumentDoc(_Reply):
    doc_id: NonEmpty
    source: NonEmpty
    title: str
    chunks: Count
    version: str


class DocumentList(_Reply):
    documents: list[DocumentDoc]


class IngestResultDoc(_Reply):
    doc_id: NonEmpty
    source: NonEmpty
    title: str
    chunks: Count
    written: Count = Field(description="Chunks embedded and stored now (0 when the document was unchanged).")
    unchanged: bool


class SkippedFile(_Reply):
    source: NonEmpty
    code: NonEmpty = Field(description="unsupported_media_type, unreadable_document, encrypted_document, ...")
    reason: str


class IngestResults(_Reply):
    documents: list[IngestResultDoc] = Field(min_length=1, description="One result per ingested file.")
    skipped: list[SkippedFile] = Field(
        default_factory=list, description="Files of the request that were not ingested, and why."
    )


class UploadForm(_Reply):
    """multipart/form-data: one or more files in the field `file` (or `files`), and optional `metadata`."""

    file: bytes = Field(description="A document: text, Markdown, HTML, PDF, Office, EPUB, CSV or JSON.")
    metadata: str | None = Field(
        None,
        description='A flat JSON object stored on every chunk of these files, e.g. {"tags": ["hr"], '
        '"lang": "en", "year": 2024, "url": "https://..."}; at most 32 keys, 8 KB; filter on it in chat '
        "and search.",
    )


class DeleteResult(_Reply):
    doc_id: NonEmpty
    deleted_chunks: int = Field(ge=1, description="An unknown document is 404, never 0.")


# -- operations ------------------------------------------------------------------------------------------


class Health(_Reply):
    status: Literal["ok"]


class ReadyChecks(_Reply):
    vector_store: bool
    embedder: NonEmpty
    chat_model: NonEmpty
    accepting: bool
    redis: bool | None = Field(None, description="Present when a Redis is configured.")


class Ready(_Reply):
    """200 when every check passes, else 503 with the same body."""

    status: Literal["ready", "not_ready"]
    checks: ReadyChecks


class LoopLag(_Reply):
    """The serving loop's lag, in milliseconds, over the recent window."""

    running: bool
    interval_ms: float = Field(gt=0)
    threshold_ms: float = Field(gt=0)
    window_samples: Count
    p50_ms: float = Field(ge=0)
    p99_ms: float = Field(ge=0)
    max_ms: float = Field(ge=0)
    samples: Count
    over_threshold: Count
    last_blocked: str | None = Field(description="What ran when the loop last blocked past the threshold.")
    tasks: Count | None = Field(None, description="Live asyncio tasks on the serving loop (GET only).")


class WidgetToken(_Reply):
    token: NonEmpty
    tenant: NonEmpty
    origin: NonEmpty
    visitor: NonEmpty = Field(description="The visitor the token is bound to (per-visitor limits).")
    expires_at: int = Field(ge=1, description="Unix time.")
    expires_in: int = Field(ge=1, description="Seconds.")


class OpenAPIDocument(BaseModel):
    """An OpenAPI 3.1 document (this one)."""

    model_config = ConfigDict(extra="allow")

    openapi: str = Field(pattern=r"^3\.1\.")
    info: dict[str, Any]
    paths: dict[str, Any]


# -- OpenAI-compatible -----------------------------------------------------------------------------------


class ModelDoc(_Reply):
    id: Literal["chatbot"] = Field(description=f"The one model this server answers as: '{MODEL_ID}'.")
    object: Literal["model"]
    created: Count
    owned_by: NonEmpty


class ModelListDoc(_Reply):
    object: Literal["list"]
    data: list[ModelDoc] = Field(min_length=1, max_length=1)


class FunctionCallDoc(_Reply):
    name: NonEmpty
    arguments: str = Field(description="The JSON text of the arguments, as the model wrote it.")


class ToolCallDoc(_Reply):
    id: NonEmpty
    type: Literal["function"]
    function: FunctionCallDoc


class CompletionMessage(_Reply):
    role: Literal["assistant"]
    content: str | None = Field(description="null when the model only called tools.")
    refusal: None = Field(description="Always null (OpenAI's field; the model never refuses here).")
    annotations: list[dict[str, Any]] = Field(
        max_length=0, description="Always empty: citations are `sources`."
    )
    tool_calls: list[ToolCallDoc] | None = None
    sources: list[SourceDoc]


class CompletionChoice(_Reply):
    index: Literal[0]
    message: CompletionMessage
    logprobs: None = Field(description="Always null: log probabilities are not returned.")
    finish_reason: NonEmpty = Field(
        description="stop, length, tool_calls, cancelled (a stopped answer) or the provider's."
    )


class ChatCompletion(_Reply):
    """POST /v1/chat/completions without streaming."""

    id: AnswerId
    object: Literal["chat.completion"]
    created: Count
    model: Literal["chatbot"]
    choices: list[CompletionChoice] = Field(min_length=1, max_length=1)
    usage: UsageDoc | None = None


class TextBlockDoc(_Reply):
    type: Literal["text"]
    text: str


class AnthropicUsageDoc(_Reply):
    input_tokens: Count
    output_tokens: Count


class AnthropicMessageDoc(_Reply):
    """POST /v1/messages without streaming (Anthropic's Message)."""

    id: AnswerId
    type: Literal["message"]
    role: Literal["assistant"]
    model: Literal["chatbot"]
    content: list[TextBlockDoc] = Field(max_length=1)
    stop_reason: NonEmpty = Field(description="end_turn, max_tokens or cancelled (a stopped answer).")
    stop_sequence: None
    usage: AnthropicUsageDoc


# -- streams and shared error sets (used in route declarations) ------------------------------------------

FRAME_TYPES = ("start", "sources", "token", "done", "stopped", "error")
NATIVE_EVENTS = EventStream("The same JSON as the websocket frame.", events=FRAME_TYPES, with_ids=True)
OPENAI_CHUNKS = EventStream('A chat.completion.chunk, {"error": ...}, or [DONE].')
ANTHROPIC_EVENTS = EventStream(
    "An Anthropic stream event (its `type` is the event name).",
    events=(
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    ),
)
UI_PARTS = EventStream("A UI message stream part, or [DONE].")
UPSTREAM = (502, 503, 504)  # a provider or the vector store failed, or a stage ran past its deadline
