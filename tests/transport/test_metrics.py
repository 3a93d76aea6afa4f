"""GET /metrics and the log context against the real app on hypercorn, with the real offline models."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from chatbot.app import create_app
from chatbot.chat.answers import Answer
from chatbot.events import ChatEvent
from chatbot.ops.observability import make_handler
from chatbot.providers.base import ChatChunk, ChatModel, ChatRequest
from chatbot.providers.registry import Providers
from chatbot.settings import Settings
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import ask_ws, ws_url

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class GatedChatModel:
    """The offline model, held before its first chunk until `gate` is set (`waiting` says it got there)."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_context_tokens = inner.max_context_tokens
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.waiting.set()
        await self.gate.wait()
        async for chunk in self.inner.stream_reply(request):
            yield chunk


async def scrape(base_url: str) -> Samples:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class TestMetricsEndpoint:
    async def test_series_after_a_websocket_answer_and_http_errors(self, served: str) -> None:
        """After an answer over websocket and two failed HTTP requests, /metrics shows them all."""
        async with websockets.connect(ws_url(served)) as ws:
            frames = await ask_ws(ws, "How do I connect over websocket?")
            assert frames[-1]["type"] == "done"
            during = await scrape(served)
        async with httpx.AsyncClient(base_url=served) as client:
            assert (await client.post("/v1/chat", content=b"not json")).status_code == 400
            assert (await client.get("/no/such/route")).status_code == 404
        after = await scrape(served)
        for _ in range(100):  # the server notices the closed socket a moment after the client
            if value(after, "chatbot_websocket_connections") == 0:
                break
            await asyncio.sleep(0.02)
            after = await scrape(served)

        assert value(during, "chatbot_websocket_connections") == 1
        assert value(after, "chatbot_websocket_connections") == 0
        assert value(after, "chatbot_active_answers") == 0
        assert value(after, "chatbot_answers_total", outcome="done") >= 1
        for stage in ("embed", "retrieve", "first_token", "generate", "total"):
            assert value(after, "chatbot_answer_stage_seconds_count", stage=stage) >= 1, stage
        assert value(after, "chatbot_answer_stage_seconds_sum", stage="total") > 0
        assert value(after, "chatbot_answer_tokens_per_second_count") >= 1
        post = {"method": "POST", "route": "/v1/chat", "status": "400"}
        assert value(after, "chatbot_http_requests_total", **post) == 1
        assert value(after, "chatbot_http_requests_total", method="GET", route="unmatched", status="404") == 1
        assert (
            value(after, "chatbot_http_request_duration_seconds_count", method="POST", route="/v1/chat") == 1
        )

    async def test_series_exist_before_any_traffic(self, served: str) -> None:
        """A fresh process exposes the gauges at 0 and every histogram family, so dashboards have series."""
        samples = await scrape(served)
        assert value(samples, "chatbot_active_answers") == 0
        assert value(samples, "chatbot_websocket_connections") == 0
        names = {name for name, _ in samples}
        assert {"chatbot_answer_tokens_per_second_count", "chatbot_cache_hits_total"} <= names

    async def test_active_answers_counts_a_running_answer(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """While an answer runs (its model held before the first token), the active answers gauge reads 1."""
        gated = GatedChatModel(offline_providers.chat)
        providers = dataclasses.replace(offline_providers, chat=gated)
        async with (
            build_services(make_settings(), providers=providers, store=guide_store) as svc,
            serve_app(create_app(svc.settings, services=svc)) as base_url,
            websockets.connect(ws_url(base_url)) as ws,
        ):
            await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            await asyncio.wait_for(gated.waiting.wait(), 10)
            during = await scrape(base_url)
            gated.gate.set()
            while json.loads(await ws.recv())["type"] not in ("done", "stopped", "error"):
                pass
        assert value(during, "chatbot_active_answers") == 1


class TestAnswerErrors:
    @pytest.fixture
    def settings(self) -> Settings:
        """An embed deadline no embedding can meet: every answer ends with error embed_timeout."""
        return make_settings(deadlines={"embed": 0.000001})

    async def test_error_outcome_and_code_are_counted(self, served: str) -> None:
        """An answer that fails counts under outcome=error and under its error code."""
        async with websockets.connect(ws_url(served)) as ws:
            frames = await ask_ws(ws, "How do I connect over websocket?")
        assert frames[-1]["type"] == "error"
        code = frames[-1]["code"]
        samples = await scrape(served)
        assert value(samples, "chatbot_answers_total", outcome="error") == 1
        assert value(samples, "chatbot_answer_errors_total", code=code) == 1
        assert value(samples, "chatbot_answers_total", outcome="done") == 0


class TestLogContext:
    @pytest.fixture
    def answer_log(self, services: Services) -> Iterator[io.StringIO]:
        """A JSON-logging observer: it logs each event from inside the answer task, like pipeline code."""
        buffer = io.StringIO()
        logger = logging.getLogger("tests.answer_events")
        handler = make_handler(json=True, stream=buffer)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

        def log_event(answer: Answer, event: ChatEvent) -> None:
            logger.info("event %s", event.type)

        services.answers.observers.append(log_event)
        yield buffer
        services.answers.observers.remove(log_event)
        logger.removeHandler(handler)
        logger.propagate = True

    async def test_http_answer_lines_carry_request_and_message_ids(
        self, served: str, answer_log: io.StringIO
    ) -> None:
        """Lines logged in the answer task carry the request's X-Request-ID and the answer's message_id."""
        async with httpx.AsyncClient(base_url=served, timeout=30) as client:
            response = await client.post(
                "/v1/chat",
                json={"message": "How do I upload documents?"},
                headers={"X-Request-ID": "req-http-1"},
            )
        assert response.status_code == 200
        lines = [json.loads(line) for line in answer_log.getvalue().splitlines()]
        assert [line["msg"] for line in lines][-1] == "event done"
        assert {line["request_id"] for line in lines} == {"req-http-1"}
        assert {line["message_id"] for line in lines} == {response.json()["message_id"]}

    async def test_websocket_answer_lines_carry_the_connection_id(
        self, served: str, answer_log: io.StringIO
    ) -> None:
        """Over a websocket, the handshake's X-Request-ID and the answer's message_id tag the lines."""
        async with websockets.connect(ws_url(served), additional_headers={"X-Request-ID": "req-ws-1"}) as ws:
            frames = await ask_ws(ws, "How do I connect over websocket?")
        lines = [json.loads(line) for line in answer_log.getvalue().splitlines()]
        assert lines
        assert {line["request_id"] for line in lines} == {"req-ws-1"}
        assert {line["message_id"] for line in lines} == {frames[0]["message_id"]}
