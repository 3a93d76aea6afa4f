"""OpenTelemetry traces: one span per answer turn and one per stage, following the GenAI semantic conventions.

Off unless an exporter is configured with the standard variables, and then free: every helper here checks one
module global and returns a no-op (no OpenTelemetry call at all) while tracing is off.

    OTEL_TRACES_EXPORTER=otlp        (or console; none, or unset without an endpoint: off)
    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318         (…/v1/traces is appended)
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://collector:4318/v1/traces
    OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*, OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_SDK_DISABLED=true           read by the SDK as usual; the exporter is OTLP over HTTP (protobuf)

Spans (children of the turn):
    chatbot.turn     gen_ai.operation.name=chat, gen_ai.request.model, gen_ai.response.model,
                     gen_ai.usage.input_tokens / output_tokens, gen_ai.response.finish_reasons,
                     gen_ai.conversation.id, chatbot.message_id, chatbot.cached
    chatbot.embed    gen_ai.operation.name=embeddings      chatbot.retrieve, chatbot.rerank, chatbot.cache
    chatbot.first_token  from the model request to its first token
    chat <model>     the model call (gen_ai.operation.name=chat, usage, finish reasons)
    chatbot.ingest   one per ingested document (chatbot.tenant, chatbot.chunks)
Message text (the question, the answer) is never put on a span unless tracing.capture_content is set; then
the turn carries gen_ai.input.messages and gen_ai.output.messages.

The trace id (32 hex digits) is on the done event (`trace_id`) and on every log line written inside a traced
turn (`trace_id`, `span_id`; ops/observability.py).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chatbot.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span as Span  # re-exported for annotations elsewhere
    from opentelemetry.trace import Tracer

    from chatbot.settings import TracingSettings

Attributes = Mapping[str, str | int | float | bool | list[str]]
STAGE_ATTRIBUTES: Final[dict[str, dict[str, str]]] = {"embed": {"gen_ai.operation.name": "embeddings"}}
DEFAULT_SERVICE_NAME: Final = "chatbot"


@dataclass(slots=True)
class _State:
    tracer: Tracer | None = None
    capture_content: bool = False


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def capture_content() -> bool:
    return _state.tracer is not None and _state.capture_content


def install(provider: TracerProvider, *, capture_content: bool = False) -> None:
    """Trace through `provider` from now on (tests pass one with an in-memory exporter)."""
    _state.tracer = provider.get_tracer("chatbot")
    _state.capture_content = capture_content


def uninstall() -> None:
    _state.tracer = None
    _state.capture_content = False


def exporter_from_env(environ: Mapping[str, str]) -> SpanExporter | None:
    """The exporter the OTEL_* variables ask for, or None when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
        environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
        if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        else None
    )
    if not names:
        names = ["otlp"] if endpoint else []
    names = [n for n in names if n != "none"]
    if not names:
        return None
    if len(names) > 1:
        raise ConfigError("OTEL_TRACES_EXPORTER: one exporter at a time (otlp or console).")
    if names[0] == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if names[0] != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER={names[0]!r} is not supported: use otlp or console.")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only http/protobuf is installed.")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


@contextlib.contextmanager
def tracing_from_env(
    settings: TracingSettings, environ: Mapping[str, str] | None = None
) -> Iterator[TracerProvider | None]:
    """Install a tracer provider with a batch exporter when the OTEL_* variables ask for one; on exit flush
    and shut it down. Yields None (and changes nothing) when tracing is off."""
    env = os.environ if environ is None else environ
    exporter = exporter_from_env(env)
    if exporter is None:
        yield None
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider, capture_content=settings.capture_content)
    try:
        yield provider
    finally:
        uninstall()
        provider.shutdown()


@contextlib.contextmanager
def span(name: str, attributes: Attributes | None = None) -> Iterator[Span | None]:
    """A span, current inside the block (None, and nothing done, while tracing is off). An exception
    leaving the block is recorded on it and sets its status to error."""
    tracer = _state.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def stage(name: str) -> contextlib.AbstractContextManager[Span | None]:
    """The span of one answer or retrieval stage (embed, retrieve, rerank, cache)."""
    if _state.tracer is None:
        return contextlib.nullcontext()
    return span(f"chatbot.{name}", {"chatbot.stage": name, **STAGE_ATTRIBUTES.get(name, {})})


def start(name: str, attributes: Attributes | None = None) -> Span | None:
    """A child of the current span that is not made current (end it yourself): for a stage that spans
    `yield`s of an async generator, where a current-span token must not cross contexts."""
    tracer = _state.tracer
    return tracer.start_span(name, attributes=attributes) if tracer is not None else None


def end(span_: Span | None, attributes: Attributes | None = None) -> None:
    if span_ is not None:
        if attributes:
            span_.set_attributes(attributes)
        span_.end()


def fail(span_: Span | None, exc: BaseException) -> None:
    """End a span that an exception left: an error is recorded (status error); a cancellation or an early
    close of the stream is not an error, and is marked chatbot.stopped instead."""
    if span_ is None:
        return
    if isinstance(exc, Exception):
        from opentelemetry.trace import Status, StatusCode

        span_.record_exception(exc)
        span_.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    else:
        span_.set_attribute("chatbot.stopped", True)
    span_.end()


def annotate(attributes: Attributes) -> None:
    """Add attributes to the current span (the turn, inside an answer task)."""
    if _state.tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, or None when there is none (or tracing is off)."""
    if _state.tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_trace_id() -> str | None:
    ids = current_ids()
    return ids[0] if ids is not None else None


def usage_attributes(
    *, model: str, input_tokens: int, output_tokens: int, finish_reason: str
) -> dict[str, str | int | list[str]]:
    """The GenAI attributes of a finished model call."""
    return {
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.response.finish_reasons": [finish_reason],
    }


def messages_attribute(role: str, text: str) -> str:
    """gen_ai.input.messages / gen_ai.output.messages: one message of text parts, as JSON."""
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}], ensure_ascii=False)


def turn_attributes(*, model: str, message_id: str, conversation_id: str, question: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "chatbot.message_id": message_id,
    }
    if conversation_id:
        attributes["gen_ai.conversation.id"] = conversation_id
    if capture_content():
        attributes["gen_ai.input.messages"] = messages_attribute("user", question)
    return attributes
