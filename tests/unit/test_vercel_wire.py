"""AI SDK UI message stream rendering: exact bytes, and every part within AI SDK 5's strict chunk schema."""

from __future__ import annotations

import json

import pytest

from chatbot.api.vercel_wire import UI_STREAM_HEADERS, UIChatBody, UIStream, media_type
from chatbot.api.wire import validate
from chatbot.events import (
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
    Usage,
)
from chatbot.providers.base import ChatMessage

# The documented parts we send, as AI SDK 5 validates them (z.strictObject: unknown keys are refused).
SCHEMA: dict[str, tuple[set[str], set[str]]] = {  # type -> (required keys, optional keys)
    "start": (set(), {"messageId", "messageMetadata"}),
    "text-start": ({"id"}, {"providerMetadata"}),
    "text-delta": ({"id", "delta"}, {"providerMetadata"}),
    "text-end": ({"id"}, {"providerMetadata"}),
    "source-document": ({"sourceId", "mediaType", "title"}, {"filename", "providerMetadata"}),
    "finish": (set(), {"messageMetadata"}),
    "abort": (set(), set()),
    "error": ({"errorText"}, set()),
}
SOURCES = (
    Source(1, "d1", "guide/setup.md", "Setup", ("Setup",), 0, "Run it.", 0.5),
    Source(2, "d2", "notes.pdf", "", (), 3, "Stop it.", 0.25),
)
DONE_EVENT = DoneEvent(usage=Usage(10, 3), timings={}, finish_reason="stop", model="extractive")


def render(*events: object) -> bytes:
    stream = UIStream("msg_1")
    return b"".join(b"".join(stream.render(e)) for e in events)  # type: ignore[arg-type]


def parts(raw: bytes) -> list[dict[str, object]]:
    blocks = raw.decode().split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""], "the stream ends with exactly one [DONE]"
    out = []
    for block in blocks[:-2]:
        assert block.startswith("data: ")
        assert "\n" not in block
        out.append(json.loads(block[len("data: ") :]))
    return out


def assert_schema(part: dict[str, object]) -> None:
    required, optional = SCHEMA[str(part["type"])]
    keys = set(part) - {"type"}
    assert required <= keys, part
    assert keys <= required | optional, part


class TestStream:
    def test_a_finished_answer_byte_for_byte(self) -> None:
        """start, sources, one text part, finish with metadata, [DONE]."""
        raw = render(
            StartEvent(message_id="msg_1", conversation_id=""),
            SourcesEvent(sources=SOURCES),
            TokenEvent(delta="Run"),
            TokenEvent(delta=" it [1]."),
            DONE_EVENT,
        )
        assert raw == (
            b'data: {"type":"start","messageId":"msg_1"}\n\n'
            b'data: {"type":"source-document","sourceId":"1","mediaType":"text/markdown","title":"Setup",'
            b'"filename":"guide/setup.md"}\n\n'
            b'data: {"type":"source-document","sourceId":"2","mediaType":"application/pdf",'
            b'"title":"notes.pdf","filename":"notes.pdf"}\n\n'
            b'data: {"type":"text-start","id":"text-msg_1"}\n\n'
            b'data: {"type":"text-delta","id":"text-msg_1","delta":"Run"}\n\n'
            b'data: {"type":"text-delta","id":"text-msg_1","delta":" it [1]."}\n\n'
            b'data: {"type":"text-end","id":"text-msg_1"}\n\n'
            b'data: {"type":"finish","messageMetadata":{"finishReason":"stop",'
            b'"usage":{"inputTokens":10,"outputTokens":3,"totalTokens":13}}}\n\n'
            b"data: [DONE]\n\n"
        )
        for part in parts(raw):
            assert_schema(part)

    def test_a_stopped_answer_aborts(self) -> None:
        """A stopped answer closes its text part, then abort (no finish), then [DONE]."""
        raw = render(
            StartEvent(message_id="msg_1", conversation_id=""), TokenEvent(delta="Run"), StoppedEvent()
        )
        assert raw.endswith(
            b'data: {"type":"text-end","id":"text-msg_1"}\n\ndata: {"type":"abort"}\n\ndata: [DONE]\n\n'
        )
        assert b'"finish"' not in raw
        for part in parts(raw):
            assert_schema(part)

    def test_an_error_after_text(self) -> None:
        """A failure after text closes the text part and sends an error part with the public message."""
        raw = render(
            TokenEvent(delta="Run"),
            ErrorEvent(code="upstream_unavailable", message="The model provider is unavailable."),
        )
        assert raw.endswith(
            b'data: {"type":"text-end","id":"text-msg_1"}\n\n'
            b'data: {"type":"error","errorText":"The model provider is unavailable."}\n\n'
            b"data: [DONE]\n\n"
        )
        assert b'"finish"' not in raw

    def test_an_error_before_text_has_no_text_part(self) -> None:
        """A failure before any token sends no text-start/text-end."""
        raw = render(
            StartEvent(message_id="msg_1", conversation_id=""),
            ErrorEvent(code="retrieve_timeout", message="Too slow."),
        )
        assert [p["type"] for p in parts(raw)] == ["start", "error"]

    def test_nothing_after_the_end_and_no_empty_deltas(self) -> None:
        """Empty deltas are skipped and events after the terminal one render nothing."""
        stream = UIStream("msg_1")
        assert stream.render(TokenEvent(delta="")) == []
        stream.render(DONE_EVENT)
        assert stream.render(TokenEvent(delta="late")) == []

    def test_headers(self) -> None:
        """The response announces the UI message stream and disables proxy buffering."""
        assert UI_STREAM_HEADERS["x-vercel-ai-ui-message-stream"] == "v1"
        assert UI_STREAM_HEADERS["Content-Type"].startswith("text/event-stream")
        assert UI_STREAM_HEADERS["X-Accel-Buffering"] == "no"
        assert UI_STREAM_HEADERS["Cache-Control"] == "no-cache"

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("a/b.MD", "text/markdown"),
            ("x.htm", "text/html"),
            ("t.txt", "text/plain"),
            ("README", "application/octet-stream"),
        ],
    )
    def test_media_types(self, source: str, expected: str) -> None:
        """A source's media type comes from its file suffix."""
        assert media_type(source) == expected


class TestRequestBody:
    def test_use_chat_body(self) -> None:
        """useChat's body: text parts joined, other parts and unknown fields ignored, roles kept."""
        body: UIChatBody = validate(
            UIChatBody,
            {
                "id": "chat-1",
                "trigger": "submit-message",
                "messageId": None,
                "messages": [
                    {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "What is a tenant?"}]},
                    {
                        "id": "a1",
                        "role": "assistant",
                        "metadata": {"finishReason": "stop"},
                        "parts": [
                            {"type": "step-start"},
                            {
                                "type": "source-document",
                                "sourceId": "1",
                                "mediaType": "text/markdown",
                                "title": "T",
                            },
                            {"type": "text", "text": "A tenant is", "state": "done"},
                            {"type": "text", "text": "an isolated space."},
                        ],
                    },
                    {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "How many?"}]},
                ],
            },
        )
        assert body.chat_messages() == [
            ChatMessage("user", "What is a tenant?"),
            ChatMessage("assistant", "A tenant is\nan isolated space."),
            ChatMessage("user", "How many?"),
        ]

    def test_content_fallback(self) -> None:
        """A message without parts (AI SDK 4 style) uses its content."""
        body: UIChatBody = validate(UIChatBody, {"messages": [{"role": "user", "content": "Hi"}]})
        assert body.chat_messages() == [ChatMessage("user", "Hi")]
