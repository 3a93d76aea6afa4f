"""chatbot.ops.observability: JSON log lines with request/message ids, credential redaction, Metrics feeds."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatbot.chat.answers import Answer
from chatbot.errors import ConfigError
from chatbot.events import DoneEvent, ErrorEvent, StartEvent, StoppedEvent, Usage
from chatbot.ops.observability import (
    Metrics,
    bind_request_id,
    configure_logging,
    make_handler,
    message_context,
    upstream_provider_label,
    wants_json_logs,
)
from chatbot.ops.redaction import REDACTED, redact
from tests.conftest import make_settings

LogCapture = tuple[logging.Logger, Callable[[], list[dict[str, Any]]]]


@pytest.fixture
def json_log() -> Iterator[LogCapture]:
    """A logger with the JSON handler writing to a buffer; the reader returns the parsed lines so far."""
    buffer = io.StringIO()
    logger = logging.getLogger("tests.observability")
    handler = make_handler(json=True, stream=buffer)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.propagate = True


def isolated(fn: Callable[[], None]) -> None:
    """Run fn in a copy of the current context, so contextvars it sets do not leak into other tests."""
    contextvars.copy_context().run(fn)


def answer() -> Answer:
    return Answer(message_id="msg_1", tenant="public", conversation_id="conv_1")


def done(*, tokens: int = 50, cached: bool = False, **timings: float) -> DoneEvent:
    return DoneEvent(usage=Usage(prompt_tokens=10, completion_tokens=tokens), timings=timings, cached=cached)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition as {(name, sorted labels): value}."""
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class TestJsonLines:
    def test_line_is_one_json_object_with_the_fixed_fields(self, json_log: LogCapture) -> None:
        """Each line parses as JSON with ts, level, logger and the rendered msg; unknown ids are omitted."""
        logger, lines = json_log
        isolated(lambda: logger.info("ingested %d documents", 3))
        [line] = lines()
        assert line["level"] == "INFO"
        assert line["logger"] == "tests.observability"
        assert line["msg"] == "ingested 3 documents"
        assert line["ts"].endswith("+00:00")
        assert "request_id" not in line
        assert "message_id" not in line

    def test_request_and_message_ids_come_from_the_context(self, json_log: LogCapture) -> None:
        """bind_request_id and message_context tag lines; leaving the block drops message_id again."""
        logger, lines = json_log

        def run() -> None:
            bind_request_id("req-42")
            with message_context("msg_abc"):
                logger.warning("inside")
            logger.warning("after")

        isolated(run)
        inside, after = lines()
        assert (inside["request_id"], inside["message_id"]) == ("req-42", "msg_abc")
        assert after["request_id"] == "req-42"
        assert "message_id" not in after

    def test_empty_request_id_gets_a_fresh_one(self) -> None:
        """bind_request_id('') makes up an id (a client that sent no X-Request-ID) and returns it."""
        ids: list[str] = []
        isolated(lambda: ids.append(bind_request_id("")))
        assert len(ids[0]) == 32

    async def test_a_task_created_in_the_context_keeps_the_ids(self, json_log: LogCapture) -> None:
        """Like the answer task: created inside message_context, it logs with the ids after the block."""
        logger, lines = json_log
        release = asyncio.Event()

        async def answer_task() -> None:
            await release.wait()
            logger.info("token")

        async def request() -> asyncio.Task[None]:
            bind_request_id("req-7")
            with message_context("msg_7"):
                return asyncio.create_task(answer_task())

        task = await asyncio.create_task(request())
        release.set()
        await task
        [line] = lines()
        assert (line["request_id"], line["message_id"]) == ("req-7", "msg_7")

    def test_exception_is_one_field(self, json_log: LogCapture) -> None:
        """exc_info renders as one exc_info string holding the traceback, still on one line."""
        logger, lines = json_log
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        [line] = lines()
        assert line["msg"] == "failed"
        assert "Traceback" in line["exc_info"]
        assert "ValueError: boom" in line["exc_info"]

    def test_extra_fields_are_kept(self, json_log: LogCapture) -> None:
        """Values passed with extra= appear as their own keys."""
        logger, lines = json_log
        logger.info("stage", extra={"stage": "embed", "ms": 12.5})
        [line] = lines()
        assert (line["stage"], line["ms"]) == ("embed", 12.5)

    def test_text_format_appends_the_ids(self) -> None:
        """The human format keeps the classic layout and adds [request_id=... message_id=...]."""
        buffer = io.StringIO()
        logger = logging.getLogger("tests.observability.text")
        handler = make_handler(json=False, stream=buffer)
        logger.addHandler(handler)
        logger.propagate = False
        try:

            def run() -> None:
                bind_request_id("req-1")
                with message_context("msg_1"):
                    logger.warning("hello")

            isolated(run)
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
        assert buffer.getvalue().rstrip().endswith("hello [request_id=req-1 message_id=msg_1]")


class TestRedaction:
    @pytest.mark.parametrize(
        ("text", "secret"),
        [
            (
                "calling openai with key sk-abcdefghijklmnopqrstuvwxyz012345",
                "sk-abcdefghijklmnopqrstuvwxyz012345",
            ),
            ("key sk-proj-AbCdEf0123456789_ghIJkl-mnOP", "AbCdEf0123456789"),
            ("headers {'Authorization': 'Bearer eyJhbGciOi.JIUzI1NiJ9.abc'}", "eyJhbGciOi"),
            ("CHATBOT_AUTH__TOKEN_SECRET=s3cr3t-value-xyz", "s3cr3t-value-xyz"),
            ('{"api_key": "0123456789abcdef"}', "0123456789abcdef"),
            ("connect redis://default:hunter2@redis:6379/0", "hunter2"),
        ],
    )
    def test_credentials_are_masked(self, text: str, secret: str) -> None:
        """API keys, bearer tokens, key=value secrets and URL passwords become [REDACTED]."""
        masked = redact(text)
        assert secret not in masked
        assert REDACTED in masked

    def test_ordinary_text_is_untouched(self) -> None:
        """Ids, codes, timings and URLs without credentials pass through unchanged."""
        text = "answer msg_0f3a done in 120 ms: completion_tokens=42 code=upstream_timeout url=http://qdrant:6333"
        assert redact(text) == text

    def test_log_lines_are_redacted_in_args_and_tracebacks(self, json_log: LogCapture) -> None:
        """A key passed as a format argument and one inside an exception message never reach the output."""
        logger, lines = json_log
        key = "sk-live0123456789abcdefghij"
        logger.info("using %s", key)
        try:
            raise RuntimeError(f"upstream refused Bearer {key}")
        except RuntimeError:
            logger.exception("call failed")
        out = json.dumps(lines())
        assert key not in out
        assert out.count(REDACTED) >= 2


class TestConfigureLogging:
    @pytest.fixture
    def root_state(self) -> Iterator[None]:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        yield
        root.handlers[:] = handlers
        root.setLevel(level)

    def test_installs_one_handler_and_replaces_its_own(self, root_state: None) -> None:
        """Calling it twice leaves one chatbot handler on the root logger, at the asked level."""
        first = configure_logging("debug", json=True, stream=io.StringIO())
        second = configure_logging("WARNING", json=False, stream=io.StringIO())
        root = logging.getLogger()
        assert second in root.handlers
        assert first not in root.handlers
        assert root.level == logging.WARNING

    def test_unknown_level_is_a_config_error(self, root_state: None) -> None:
        """A typo in CHATBOT_LOG_LEVEL fails at start-up with a readable error."""
        with pytest.raises(ConfigError, match="verbose"):
            configure_logging("verbose")

    @pytest.mark.parametrize(
        ("env", "log_format", "expected"),
        [("dev", "auto", False), ("prod", "auto", True), ("dev", "json", True), ("prod", "text", False)],
    )
    def test_format_follows_settings(self, env: str, log_format: str, expected: bool) -> None:
        """auto = JSON in prod and text in dev; json/text force it."""
        key = {"id": "k", "sha256": "0" * 64, "tenant": "t", "roles": ["chat"]}
        secret = {"auth": {"token_secret": "x" * 48, "api_keys": [key]}} if env == "prod" else {}
        settings = make_settings(env=env, log_format=log_format, **secret)
        assert wants_json_logs(settings) is expected


class TestMetrics:
    def test_done_feeds_stage_histograms_outcome_and_tokens_per_second(self) -> None:
        """A done event observes each known stage in seconds, counts outcome=done, and 50 tokens / 0.5 s."""
        m = Metrics()
        m.observe_answer(answer(), StartEvent(message_id="msg_1", conversation_id="conv_1"))
        m.observe_answer(
            answer(), done(embed=20.0, retrieve=30.0, first_token=100.0, generate=500.0, total=600.0)
        )
        s = samples(m)
        assert s[("chatbot_answers_total", (("outcome", "done"),))] == 1
        for stage in ("embed", "retrieve", "first_token", "generate", "total"):
            assert s[("chatbot_answer_stage_seconds_count", (("stage", stage),))] == 1
        assert s[("chatbot_answer_stage_seconds_sum", (("stage", "generate"),))] == pytest.approx(0.5)
        assert ("chatbot_answer_stage_seconds_count", (("stage", "rerank"),)) not in s
        assert s[("chatbot_answer_tokens_per_second_sum", ())] == pytest.approx(100.0)

    def test_cached_answers_do_not_count_as_generation_speed(self) -> None:
        """A cached done event still counts as done but adds no tokens-per-second sample."""
        m = Metrics()
        m.observe_answer(answer(), done(cached=True, generate=1.0, total=2.0))
        s = samples(m)
        assert s[("chatbot_answers_total", (("outcome", "done"),))] == 1
        assert s[("chatbot_answer_tokens_per_second_count", ())] == 0

    def test_stopped_and_errors_by_code(self) -> None:
        """Stopped and error outcomes count; errors by code; upstream and vector store errors by provider."""
        m = Metrics(upstream_provider="openai")
        m.observe_answer(answer(), StoppedEvent())
        m.observe_answer(answer(), ErrorEvent(code="embed_timeout", message="slow"))
        m.observe_answer(answer(), ErrorEvent(code="upstream_rate_limited", message="429"))
        m.observe_answer(answer(), ErrorEvent(code="vector_store_unavailable", message="down"))
        s = samples(m)
        assert s[("chatbot_answers_total", (("outcome", "stopped"),))] == 1
        assert s[("chatbot_answers_total", (("outcome", "error"),))] == 3
        assert s[("chatbot_answer_errors_total", (("code", "embed_timeout"),))] == 1
        upstream = {k[1]: v for k, v in s.items() if k[0] == "chatbot_upstream_errors_total"}
        assert upstream == {
            (("code", "upstream_rate_limited"), ("provider", "openai")): 1,
            (("code", "vector_store_unavailable"), ("provider", "qdrant")): 1,
        }

    def test_gauges_read_live_state_until_closed(self) -> None:
        """Active answers and websocket connections are read at scrape time; after close they read 0."""
        running, connections = [2], {"a", "b", "c"}
        m = Metrics(running_answers=lambda: running[0], open_connections=lambda: len(connections))
        s = samples(m)
        assert s[("chatbot_active_answers", ())] == 2
        assert s[("chatbot_websocket_connections", ())] == 3
        running[0] = 0
        assert samples(m)[("chatbot_active_answers", ())] == 0
        m.close()
        assert samples(m)[("chatbot_websocket_connections", ())] == 0

    def test_cache_loop_lag_and_http_requests(self) -> None:
        """cache_hit/miss, observe_loop_lag and observe_request feed their series; no rule is 'unmatched'."""
        m = Metrics()
        m.cache_hit()
        m.cache_hit()
        m.cache_miss()
        m.observe_loop_lag(0.003)
        m.observe_request("GET", "/v1/chat/<message_id>", 200, 0.01)
        m.observe_request("GET", None, 404, 0.001)
        s = samples(m)
        assert s[("chatbot_cache_hits_total", ())] == 2
        assert s[("chatbot_cache_misses_total", ())] == 1
        assert s[("chatbot_event_loop_lag_seconds_count", ())] == 1
        key = (("method", "GET"), ("route", "/v1/chat/<message_id>"), ("status", "200"))
        assert s[("chatbot_http_requests_total", key)] == 1
        assert (
            s[("chatbot_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))]
            == 1
        )

    def test_each_instance_has_its_own_registry(self) -> None:
        """Two Metrics (two apps in one process) neither collide nor share counts."""
        a, b = Metrics(), Metrics()
        a.observe_answer(answer(), StoppedEvent())
        assert samples(a)[("chatbot_answers_total", (("outcome", "stopped"),))] == 1
        assert ("chatbot_answers_total", (("outcome", "stopped"),)) not in samples(b)

    @pytest.mark.parametrize(
        ("overrides", "reranker", "expected"),
        [
            ({}, False, "unknown"),
            ({"openai": {"api_key": "k"}}, False, "openai"),
            ({"openai": {"api_key": "k"}}, True, "cohere+openai"),
            ({"cohere": {"api_key": "k"}}, True, "cohere"),
        ],
    )
    def test_upstream_provider_label_names_the_configured_remote_providers(
        self, overrides: dict[str, Any], reranker: bool, expected: str
    ) -> None:
        """The provider label is the set of remote providers that an upstream_* error can come from."""
        settings = make_settings(embedding_provider="auto", chat_provider="auto", **overrides)
        assert upstream_provider_label(settings, reranker=reranker) == expected
