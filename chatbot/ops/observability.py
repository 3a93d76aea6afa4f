"""Metrics (Prometheus, one registry per Services) and structured logs (JSON lines with request/message ids).

Metrics are fed by an answer observer (AnswerManager.observers), the loop-lag monitor, request hooks (app.py),
and callbacks that read live state when /metrics is scraped. Nothing here blocks: observing is a few dict
updates on the loop, and rendering the text exposition is cheap enough to do inline.

Logs: configure_logging() installs one handler on the root logger. Every line carries request_id and
message_id when known (contextvars: set per request in app.py and the websocket handler, and per answer in
api/asks.py before the answer task is created, so the task inherits them). A redaction filter masks anything
that looks like a credential, or is one the process was configured with, in messages, tracebacks and extras
(ops/redaction.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json as _json
import logging
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from chatbot.errors import ConfigError
from chatbot.events import DoneEvent, ErrorEvent, StoppedEvent
from chatbot.ops import tracing
from chatbot.ops.redaction import STANDARD_ATTRS, RedactingFilter, Redactor

if TYPE_CHECKING:
    from chatbot.events import ChatEvent
    from chatbot.settings import Settings
    from chatbot.stores.base import Feedback

# -- metrics ------------------------------------------------------------------------------------------------

STAGES: Final = ("embed", "retrieve", "rerank", "cache", "first_token", "generate", "total")
"""DoneEvent.timings keys observed as stages; other keys are ignored (bounded label values)."""

STAGE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0)
TOKENS_PER_SECOND_BUCKETS: Final = (1.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 5000.0)
LOOP_LAG_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
UPSTREAM_PREFIXES: Final = ("upstream_", "vector_store_")
UNMATCHED_ROUTE: Final = "unmatched"
EXPOSITION_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which Prometheus 2 and 3 both parse (our names need none of 1.0.0's UTF-8)."""


class Metrics:
    """Every series the service exposes, in a registry of its own (apps in one process don't collide).

    `upstream_provider` labels upstream_* errors: an error event does not say which provider failed, so the
    label is the configured remote provider(s) ("openai", "cohere", "cohere+openai"); vector_store_* errors
    are labelled "qdrant".
    """

    def __init__(
        self,
        *,
        upstream_provider: str = "unknown",
        running_answers: Callable[[], float] | None = None,
        open_connections: Callable[[], float] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.upstream_provider = upstream_provider
        r = self.registry
        self.stage_seconds = Histogram(
            "chatbot_answer_stage_seconds",
            "Latency of each answer stage (DoneEvent.timings), seconds.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "chatbot_answer_tokens_per_second",
            "Completion tokens per second of generation (completion_tokens / generate stage) per answer.",
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=r,
        )
        self.answers = Counter(
            "chatbot_answers", "Answers ended, by outcome (done, stopped, error).", ["outcome"], registry=r
        )
        self.errors = Counter(
            "chatbot_answer_errors", "Answers that ended with an error, by error code.", ["code"], registry=r
        )
        self.upstream_errors = Counter(
            "chatbot_upstream_errors",
            "Answer errors caused by a provider or the vector store, by provider and code.",
            ["provider", "code"],
            registry=r,
        )
        self.cache_hits = Counter("chatbot_cache_hits", "Answers served from the semantic cache.", registry=r)
        self.cache_misses = Counter(
            "chatbot_cache_misses", "Semantic cache lookups that found nothing.", registry=r
        )
        self.loop_lag = Histogram(
            "chatbot_event_loop_lag_seconds",
            "How late the event loop ran a timer callback, seconds.",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "chatbot_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "chatbot_http_request_duration_seconds",
            "Time to response headers (a streamed body runs on after), by method and route.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.feedback = Counter(
            "chatbot_feedback",
            "Ratings given to answers (a changed vote counts again), by rating (up, down).",
            ["rating"],
            registry=r,
        )
        for rating in ("up", "down"):
            self.feedback.labels(rating)  # both series exist from the start, at 0
        self._running = running_answers
        self._connections = open_connections
        self.active_answers = Gauge("chatbot_active_answers", "Answers running in this process.", registry=r)
        self.active_answers.set_function(self._read_running)
        self.websocket_connections = Gauge(
            "chatbot_websocket_connections", "Open websocket connections to this process.", registry=r
        )
        self.websocket_connections.set_function(self._read_connections)

    # -- feeds ----------------------------------------------------------------------------------------------

    def observe_answer(self, _answer: object, event: ChatEvent) -> None:
        """AnswerManager observer: called on the loop for every event an answer emits."""
        if isinstance(event, DoneEvent):
            self.answers.labels("done").inc()
            self._observe_done(event)
        elif isinstance(event, StoppedEvent):
            self.answers.labels("stopped").inc()
        elif isinstance(event, ErrorEvent):
            self.answers.labels("error").inc()
            self.errors.labels(event.code).inc()
            if event.code.startswith(UPSTREAM_PREFIXES):
                provider = "qdrant" if event.code.startswith("vector_store_") else self.upstream_provider
                self.upstream_errors.labels(provider, event.code).inc()

    def _observe_done(self, event: DoneEvent) -> None:
        for stage in STAGES:
            ms = event.timings.get(stage)
            if ms is not None and ms >= 0:
                self.stage_seconds.labels(stage).observe(ms / 1000)
        generate_ms = event.timings.get("generate", 0.0)
        tokens = event.usage.completion_tokens
        if not event.cached and tokens > 0 and generate_ms > 0:
            self.tokens_per_second.observe(tokens / (generate_ms / 1000))

    def observe_feedback(self, feedback: Feedback) -> None:
        """A FeedbackService observer: one rating given."""
        self.feedback.labels(feedback.rating).inc()

    def cache_hit(self) -> None:
        self.cache_hits.inc()

    def cache_miss(self) -> None:
        self.cache_misses.inc()

    def observe_loop_lag(self, seconds: float) -> None:
        """A LoopLagMonitor listener: how late a timer fired."""
        self.loop_lag.observe(max(0.0, seconds))

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """One HTTP request. `route` is the URL rule, never the raw path, so label values stay bounded."""
        label = route or UNMATCHED_ROUTE
        self.http_requests.labels(method, label, str(status)).inc()
        self.http_seconds.labels(method, label).observe(max(0.0, seconds))

    # -- exposition and lifecycle ---------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text exposition."""
        return generate_latest(self.registry), EXPOSITION_CONTENT_TYPE

    def close(self) -> None:
        """Forget the live-state callbacks (the services they read are closing); the gauges then read 0."""
        self._running = None
        self._connections = None

    def _read_running(self) -> float:
        return float(self._running()) if self._running is not None else 0.0

    def _read_connections(self) -> float:
        return float(self._connections()) if self._connections is not None else 0.0


def upstream_provider_label(settings: Settings, *, reranker: bool) -> str:
    """The remote providers an upstream_* error can come from, joined with '+' ('unknown' when none)."""
    names = {settings.resolved_chat_provider, settings.resolved_embedding_provider}
    if reranker:
        names.add("cohere")
    remote = sorted(names & {"openai", "cohere"})
    return "+".join(remote) or "unknown"


# -- logging context ----------------------------------------------------------------------------------------

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chatbot_request_id", default=None
)
message_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chatbot_message_id", default=None
)


def bind_request_id(request_id: str | None = None) -> str:
    """Tag this request's (or websocket connection's) log lines; tasks it creates inherit the value.
    An empty id gets a fresh one, which is returned."""
    request_id = request_id or uuid.uuid4().hex
    request_id_var.set(request_id)
    return request_id


@contextlib.contextmanager
def message_context(message_id: str) -> Iterator[None]:
    """Tag log lines with message_id inside the block; a task created in it (the answer) keeps the value."""
    token = message_id_var.set(message_id)
    try:
        yield
    finally:
        message_id_var.reset(token)


class ContextFilter(logging.Filter):
    """Copies request_id and message_id from the contextvars onto each record (None when unknown), and the
    trace_id and span_id of the current span while tracing is on (ops/tracing.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, var in (("request_id", request_id_var), ("message_id", message_id_var)):
            if getattr(record, key, None) is None:
                setattr(record, key, var.get())
        if getattr(record, "trace_id", None) is None:
            ids = tracing.current_ids()
            record.trace_id, record.span_id = ids if ids is not None else (None, None)
        return True


# -- formatters ---------------------------------------------------------------------------------------------

LOG_IDS: Final = ("request_id", "message_id", "trace_id", "span_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id and message_id when known, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in LOG_IDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        for key, value in vars(record).items():
            if key not in STANDARD_ATTRS and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return _json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The human format, with the request and message ids appended when known."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = [f"{k}={v}" for k in LOG_IDS if (v := getattr(record, k, None)) is not None]
        if not ids:
            return text
        first, sep, rest = text.partition("\n")
        return f"{first} [{' '.join(ids)}]{sep}{rest}"


_HANDLER_MARK: Final = "_chatbot_handler"


def make_handler(
    *, json: bool = True, stream: IO[str] | None = None, secrets: Iterable[str] = ()
) -> logging.Handler:
    """A stream handler with the context and redaction filters and the JSON (or text) formatter; `secrets`
    are masked by value (and by any piece of PARTIAL_CHARS characters) besides what redaction finds by shape."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure_logging(
    level: str | int = "INFO",
    *,
    json: bool = True,
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Install the handler on the root logger (replacing one installed before) and set the level. Pass
    `secrets=known_secrets(settings)` so every configured key is masked by value in every line."""
    if isinstance(level, str) and level.upper() not in logging.getLevelNamesMapping():
        raise ConfigError(
            f"Unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR (CHATBOT_LOG_LEVEL)."
        )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = make_handler(json=json, stream=stream, secrets=secrets)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def wants_json_logs(settings: Settings) -> bool:
    """log_format json/text as set; auto = JSON lines in prod (for collectors), text in dev (for people)."""
    if settings.log_format == "auto":
        return settings.env == "prod"
    return settings.log_format == "json"
