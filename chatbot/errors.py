"""One error hierarchy: every failure a client can see has a stable code, an HTTP status and a public message.

Transports render a ChatbotError as an HTTP JSON body, a websocket error frame or an error event in a stream.
The public message never contains exception text from a dependency; that goes to the log.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChatbotError(Exception):
    """Base of every error we show to a client."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code  # type: ignore[misc]  # instance override of the class default
        self.retry_after = retry_after
        self.details = details or {}
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            body["retry_after"] = round(self.retry_after, 3)
        if self.details:
            body["details"] = self.details
        return body


class ConfigError(ChatbotError):
    """Settings that cannot work; raised at start-up, never per request."""

    code = "config_error"
    default_message = "The server is misconfigured."


class StoreInUse(ConfigError):
    """The embedded vector store is open in another process (a running server): one process at a time."""

    code = "store_in_use"
    default_message = "The embedded vector store is in use by another process."


class BadRequest(ChatbotError):
    code = "bad_request"
    status = 400
    default_message = "The request is not valid."


class InvalidJSON(BadRequest):
    code = "invalid_json"
    default_message = "The body is not valid JSON."


class ValidationFailed(BadRequest):
    code = "validation_error"
    status = 422
    default_message = "The request does not match the expected shape."


class EmptyMessage(BadRequest):
    code = "empty_message"
    default_message = "The message is empty."


class MessageTooLong(BadRequest):
    code = "message_too_long"
    status = 413
    default_message = "The message is longer than the server accepts."


class UnknownFrameType(BadRequest):
    code = "unknown_frame_type"
    default_message = "Unknown frame type."


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    status = 413
    default_message = "The request is larger than the server accepts."


class UnsupportedMediaType(BadRequest):
    code = "unsupported_media_type"
    status = 415
    default_message = "This file type is not supported."


class UnreadableDocument(BadRequest):
    code = "unreadable_document"
    status = 422
    default_message = "The document could not be read."


class Unauthorized(ChatbotError):
    code = "unauthorized"
    status = 401
    default_message = "A valid API key or widget token is required."


class Forbidden(ChatbotError):
    code = "forbidden"
    status = 403
    default_message = "This credential may not do that."


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"
    default_message = "This origin is not allowed."


class NotFound(ChatbotError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class UnknownConversation(NotFound):
    code = "unknown_conversation"
    default_message = "No conversation with that id."


class UnknownMessage(NotFound):
    code = "unknown_message"
    default_message = "No answer with that message id (it may have expired)."


class UnknownDocument(NotFound):
    code = "unknown_document"
    default_message = "No document with that id."


class UnknownJob(NotFound):
    code = "unknown_job"
    default_message = "No ingestion job with that id."


class Conflict(ChatbotError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class AnswerInProgress(Conflict):
    code = "answer_in_progress"
    default_message = "An answer is already running on this connection; stop it first."


class EmbeddingMismatch(Conflict):
    code = "embedding_mismatch"
    default_message = "The collection was filled by a different embedding model."


class Busy(ChatbotError):
    code = "busy"
    status = 429
    default_message = "The server is at its limit of concurrent answers; retry shortly."


class RateLimited(ChatbotError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests; retry later."


class QuotaExceeded(ChatbotError):
    code = "quota_exceeded"
    status = 429
    default_message = "The token budget is used up."


class ShuttingDown(ChatbotError):
    code = "shutting_down"
    status = 503
    default_message = "The server is shutting down; retry on another instance."


class DeadlineExceeded(ChatbotError):
    """A stage ran past its deadline; the code names the stage (embed_timeout, first_token_timeout...)."""

    code = "deadline_exceeded"
    status = 504
    default_message = "The answer took too long."

    def __init__(self, stage: str, seconds: float) -> None:
        super().__init__(
            f"The {stage.replace('_', ' ')} stage took longer than {seconds:g} s.", code=f"{stage}_timeout"
        )
        self.stage = stage


class UpstreamError(ChatbotError):
    """A provider (LLM, embedding, reranker, vector store) failed."""

    code = "upstream_error"
    status = 502
    default_message = "An upstream service failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        provider: str = "",
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, retry_after=retry_after)
        self.provider = provider


class UpstreamRateLimited(UpstreamError):
    code = "upstream_rate_limited"
    status = 503
    default_message = "The model provider is rate limiting us; retry later."


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"
    status = 502
    default_message = "The model provider is unavailable."


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"
    status = 504
    default_message = "The model provider did not answer in time."


class UpstreamBadResponse(UpstreamError):
    code = "upstream_bad_response"
    status = 502
    default_message = "The model provider sent a response we could not read."


class UpstreamAuth(UpstreamError):
    code = "upstream_auth"
    status = 502
    default_message = "The server's credentials for the model provider were refused."


class VectorStoreUnavailable(UpstreamError):
    code = "vector_store_unavailable"
    status = 503
    default_message = "The vector store is unavailable."


def _all_subclasses(cls: type[ChatbotError]) -> list[type[ChatbotError]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def status_for_code(code: str) -> int:
    """The HTTP status of an error code (for errors that arrive as events rather than exceptions)."""
    if code.endswith("_timeout"):
        return DeadlineExceeded.status
    for cls in _all_subclasses(ChatbotError):
        if cls.code == code:
            return cls.status
    return ChatbotError.status
