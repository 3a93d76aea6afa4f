"""OpenTelemetry spans of a turn and its stages, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chatbot.chat.caller import Caller
from chatbot.chat.service import Ask
from chatbot.errors import ConfigError
from chatbot.events import ChatEvent, DoneEvent
from chatbot.ingest.service import Ingestor
from chatbot.ops import tracing
from chatbot.ops.observability import make_handler
from chatbot.providers.base import ChatChunk, ChatModel, ChatRequest
from chatbot.providers.registry import Providers
from chatbot.settings import TracingSettings
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings

QUESTION = "How do I connect over websocket? secret-question-marker"


class LoggingChatModel:
    """The offline model, writing one log line while it streams (inside the turn's span)."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_context_tokens = inner.max_context_tokens

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        logging.getLogger("tests.tracing").warning("model called")
        async for chunk in self.inner.stream_reply(request):
            yield chunk


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    made = TracerProvider()
    yield made
    tracing.uninstall()
    made.shutdown()


@pytest.fixture
def spans(provider: TracerProvider) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    return exporter


async def answer(svc: Services, question: str = QUESTION) -> list[ChatEvent]:
    caller = Caller(tenant="public")
    started = await svc.chat_service.start(caller, Ask(message=question))
    events = await svc.chat_service.follow(caller, started.message_id)
    return [event async for _seq, event in events]


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def all_attribute_text(exporter: InMemorySpanExporter) -> str:
    return json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()], default=str)


class TestTurn:
    async def test_turn_and_stage_spans_follow_genai_conventions(
        self, services: Services, spans: InMemorySpanExporter
    ) -> None:
        """A turn gives chatbot.turn with GenAI usage attributes and children for each stage, one trace."""
        events = await answer(services)
        done = events[-1]
        assert isinstance(done, DoneEvent)
        found = by_name(spans)
        model = services.chat.name
        assert {
            "chatbot.turn",
            "chatbot.embed",
            "chatbot.retrieve",
            "chatbot.first_token",
            f"chat {model}",
        } <= set(found)
        turn = found["chatbot.turn"]
        attrs = dict(turn.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == model
        assert attrs["gen_ai.usage.input_tokens"] == done.usage.prompt_tokens
        assert attrs["gen_ai.usage.output_tokens"] == done.usage.completion_tokens
        assert tuple(attrs["gen_ai.response.finish_reasons"]) == (done.finish_reason,)  # type: ignore[arg-type]
        assert found["chatbot.embed"].attributes["gen_ai.operation.name"] == "embeddings"  # type: ignore[index]
        assert found[f"chat {model}"].attributes["gen_ai.usage.output_tokens"] == done.usage.completion_tokens  # type: ignore[index]
        trace_id = turn.context.trace_id  # type: ignore[union-attr]
        assert {s.context.trace_id for s in found.values()} == {trace_id}  # type: ignore[union-attr]
        for name in ("chatbot.embed", "chatbot.retrieve", "chatbot.first_token", f"chat {model}"):
            assert found[name].parent is not None
            assert found[name].parent.span_id == turn.context.span_id
        assert done.trace_id == format(trace_id, "032x")

    async def test_no_message_text_unless_opted_in(
        self, services: Services, provider: TracerProvider, spans: InMemorySpanExporter
    ) -> None:
        """Without capture_content no span carries the question or the answer; with it the turn carries both."""
        events = await answer(services)
        assert "secret-question-marker" not in all_attribute_text(spans)
        assert "".join(getattr(e, "delta", "") for e in events) not in all_attribute_text(spans)
        spans.clear()
        tracing.install(provider, capture_content=True)
        events = await answer(services)
        turn = dict(by_name(spans)["chatbot.turn"].attributes or {})
        assert "secret-question-marker" in str(turn["gen_ai.input.messages"])
        text = "".join(getattr(e, "delta", "") for e in events)
        assert json.loads(str(turn["gen_ai.output.messages"]))[0]["parts"][0]["content"] == text

    async def test_trace_id_in_log_lines_of_the_turn(
        self, offline_providers: Providers, guide_store: VectorStore, spans: InMemorySpanExporter
    ) -> None:
        """A line logged inside the turn carries its trace id (JSON and text formats)."""
        providers = Providers(
            embedder=offline_providers.embedder,
            sparse=offline_providers.sparse,
            chat=LoggingChatModel(offline_providers.chat),
            reranker=None,
        )
        out = io.StringIO()
        handler = make_handler(json=True, stream=out)
        logger = logging.getLogger("tests.tracing")
        logger.addHandler(handler)
        try:
            async with build_services(make_settings(), providers=providers, store=guide_store) as svc:
                done = (await answer(svc))[-1]
        finally:
            logger.removeHandler(handler)
        assert isinstance(done, DoneEvent)
        assert done.trace_id
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(line["msg"], line["trace_id"]) for line in lines] == [("model called", done.trace_id)]
        assert len(lines[0]["span_id"]) == 16

    async def test_ingest_span(
        self, offline_providers: Providers, guide_store: VectorStore, spans: InMemorySpanExporter
    ) -> None:
        """Each ingested document gets a chatbot.ingest span with its chunk count."""
        ingestor = Ingestor(
            embedder=offline_providers.embedder, sparse=offline_providers.sparse, store=guide_store
        )
        result = await ingestor.ingest_bytes("t-trace", "note.md", b"# Note\n\nTracing ingest works.\n")
        await ingestor.delete("t-trace", result.doc_id)
        ingest = by_name(spans)["chatbot.ingest"]
        assert ingest.attributes["chatbot.chunks"] == result.chunks  # type: ignore[index]


class TestOff:
    async def test_off_by_default_done_has_no_trace_id(self, services: Services) -> None:
        """Without a provider installed nothing is traced and the done event has no trace_id."""
        assert not tracing.enabled()
        done = (await answer(services))[-1]
        assert isinstance(done, DoneEvent)
        assert done.trace_id is None
        assert "trace_id" not in done.model_dump(exclude_none=True)


class TestEnvironment:
    @pytest.mark.parametrize(
        "environ",
        [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}],
    )
    def test_off_unless_an_exporter_is_set(self, environ: dict[str, str]) -> None:
        """No exporter variable (or none, or the SDK disabled) means tracing stays off."""
        assert tracing.exporter_from_env(environ) is None
        with tracing.tracing_from_env(TracingSettings(), environ) as provider:
            assert provider is None
            assert not tracing.enabled()

    def test_an_endpoint_alone_selects_otlp_http(self) -> None:
        """OTEL_EXPORTER_OTLP_ENDPOINT alone turns on the OTLP/HTTP exporter at <endpoint>/v1/traces."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = tracing.exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1/"})
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == "http://127.0.0.1:1/v1/traces"
        exporter.shutdown()

    @pytest.mark.parametrize(
        "environ",
        [
            {"OTEL_TRACES_EXPORTER": "jaeger"},
            {"OTEL_TRACES_EXPORTER": "otlp,console"},
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        ],
    )
    def test_unsupported_choices_fail_at_start(self, environ: dict[str, str]) -> None:
        """An exporter or protocol we do not ship is a ConfigError at start-up, not silence."""
        with pytest.raises(ConfigError):
            tracing.exporter_from_env(environ)
