"""Spans reach an OTLP/HTTP receiver on 127.0.0.1: the app configured only by OTEL_* variables, the real
exporter, and a tiny receiver that decodes the protobuf export request with opentelemetry-proto."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from chatbot.app import create_app
from chatbot.ops import tracing
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import sse_events


class Receiver(ThreadingHTTPServer):
    """Collects the decoded export requests POSTed to /v1/traces."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exports: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(name, attributes, resource attributes) of every span received."""
        out = []
        for export in self.exports:
            for rs in export.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append((s.name, {kv.key: _value(kv.value) for kv in s.attributes}, resource))
        return out


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.exports.append(request)
        self.server.paths.append(self.path)
        self.server.content_types.append(self.headers.get("Content-Type", ""))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_spans_arrive_at_the_otlp_receiver(
    receiver: Receiver,
    offline_providers: Providers,
    guide_store: VectorStore,
    monkeypatch: pytest.MonkeyPatch,
    compression: str,
) -> None:
    """An answer over SSE is exported (on shutdown at the latest) as GenAI spans with our service name."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "chatbot-under-test")
    settings = make_settings()
    async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
        assert tracing.enabled()
        async with (
            serve_app(create_app(settings, services=svc)) as base,
            httpx.AsyncClient(base_url=base) as c,
        ):
            _, events = await sse_events(
                c, "POST", "/v1/chat", json={"message": "How do I connect over websocket?", "stream": True}
            )
    assert not tracing.enabled()  # uninstalled, flushed and shut down with the services
    done = events[-1]["data"]
    assert done["type"] == "done"
    trace_id = done["trace_id"]
    assert len(trace_id) == 32
    assert set(receiver.paths) == {"/v1/traces"}
    assert set(receiver.content_types) == {"application/x-protobuf"}
    spans = receiver.spans()
    names = {name for name, _, _ in spans}
    assert {"chatbot.turn", "chatbot.embed", "chatbot.retrieve", "chatbot.first_token"} <= names
    turn = next(attrs for name, attrs, _ in spans if name == "chatbot.turn")
    assert turn["gen_ai.operation.name"] == "chat"
    assert turn["gen_ai.usage.output_tokens"] == done["usage"]["completion_tokens"]
    assert turn["gen_ai.response.finish_reasons"] == [done["finish_reason"]]
    assert {resource["service.name"] for _, _, resource in spans} == {"chatbot-under-test"}
    exported_ids = {
        s.trace_id.hex()
        for e in receiver.exports
        for rs in e.resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    assert trace_id in exported_ids
