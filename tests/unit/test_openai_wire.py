"""OpenAI Chat Completions rendering: exact bytes of chunks, completions and errors, checked against the
openai SDK's own (strict) models where the value is an OpenAI one."""

from __future__ import annotations

import json

import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.model import Model

from chatbot.api.openai_requests import ChatCompletionBody, ModelNotFound, UnsupportedContent
from chatbot.api.openai_wire import (
    DONE,
    ChunkStream,
    completion_of,
    error_body,
    error_event_body,
    error_status,
    model_list,
)
from chatbot.api.wire import validate
from chatbot.chat.service import Collected
from chatbot.errors import (
    Busy,
    ChatbotError,
    InvalidJSON,
    MessageTooLong,
    PayloadTooLarge,
    Unauthorized,
    UpstreamUnavailable,
    ValidationFailed,
)
from chatbot.events import (
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
)
from chatbot.providers.base import PLAIN, ChatMessage, GenerationOptions, Tool, ToolCall
from tests.openai_schema import check_chunk, check_completion

SOURCE = Source(1, "d1", "guide/setup.md", "Setup", ("Setup", "Install"), 0, "Run it.", 0.5)
SOURCE_JSON = (
    '{"n":1,"doc_id":"d1","source":"guide/setup.md","title":"Setup","heading_path":["Setup","Install"],'
    '"chunk_index":0,"text":"Run it.","score":0.5}'
)
HEAD = '{"id":"msg_1","object":"chat.completion.chunk","created":7,"model":"chatbot","choices":'
DONE_EVENT = DoneEvent(usage=Usage(10, 3), timings={}, finish_reason="stop", model="extractive")


def line(delta: str, finish_reason: str) -> bytes:
    """One chunk line, written out by hand."""
    choice = f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish_reason}}}'
    return f"data: {HEAD}[{choice}]}}\n\n".encode()


def frames(stream: ChunkStream, *events: object) -> bytes:
    return b"".join(b"".join(stream.render(e)) for e in events)  # type: ignore[arg-type]


def data_objects(raw: bytes) -> list[dict[str, object]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block and block != "data: [DONE]":
            assert block.startswith("data: ")
            out.append(json.loads(block[len("data: ") :]))
    return out


class TestRequestBody:
    def parse(self, **body: object) -> ChatCompletionBody:
        parsed: ChatCompletionBody = validate(ChatCompletionBody, {"model": "chatbot", **body})
        return parsed

    def test_string_and_text_part_contents(self) -> None:
        """String content and lists of text parts both become plain text; developer counts as system."""
        body = self.parse(
            messages=[
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
                },
                {"role": "assistant", "content": None, "refusal": None},
                {"role": "user", "content": "What is a tenant?", "name": "ann"},
            ]
        )
        assert body.chat_messages() == [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi\nthere"),
            ChatMessage("assistant", ""),
            ChatMessage("user", "What is a tenant?"),
        ]

    def test_non_text_parts_are_refused(self) -> None:
        """An image part is a 400 unsupported_content error naming the messages param."""
        body = self.parse(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        )
        with pytest.raises(UnsupportedContent) as info:
            body.chat_messages()
        assert error_status(info.value) == 400
        assert error_body(info.value)["error"]["param"] == "messages"

    def test_an_agent_loop_history_is_read(self) -> None:
        """An assistant message with tool_calls and the tool message answering it become ChatMessages."""
        call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"c":"P"}'}}
        body = self.parse(
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
            ]
        )
        assert body.chat_messages()[1:] == [
            ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "weather", '{"c":"P"}'),)),
            ChatMessage("tool", "sunny", tool_call_id="call_1"),
        ]

    @pytest.mark.parametrize(
        ("message", "param"),
        [
            ({"role": "tool", "content": "x"}, "messages.0"),
            (
                {
                    "role": "user",
                    "content": "x",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": ""}}],
                },
                "messages.0",
            ),
            ({"role": "tool", "content": "x", "tool_call_id": ""}, "messages.0.tool_call_id"),
            ({"role": "robot", "content": "x"}, "messages.0.role"),
        ],
        ids=["tool-without-call-id", "user-with-tool-calls", "empty-call-id", "unknown-role"],
    )
    def test_malformed_tool_messages_are_400s(self, message: dict[str, object], param: str) -> None:
        """A tool message without its call id, tool_calls on a non-assistant message: a 400 naming the field."""
        with pytest.raises(ValidationFailed) as info:
            self.parse(messages=[message])
        body = error_body(info.value)["error"]
        assert error_status(info.value) == 400
        assert body["param"] == param
        assert body["type"] == "invalid_request_error"

    def test_generation_options(self) -> None:
        """stop (string or list), seed, response_format, tools and tool_choice become GenerationOptions."""
        tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
        body = self.parse(
            messages=[],
            stop="END",
            seed=7,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {}}},
            tools=[tool],
            tool_choice={"type": "function", "function": {"name": "weather"}},
        )
        assert body.options == GenerationOptions(
            stop=("END",),
            seed=7,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {}}},
            tools=(Tool("weather", None, {"type": "object"}),),
            tool_choice={"type": "function", "function": {"name": "weather"}},
        )
        assert self.parse(messages=[], stop=["a", "b"]).options.stop == ("a", "b")

    def test_defaults_ask_nothing(self) -> None:
        """No options, response_format text, an empty tool list and stop list: the PLAIN options."""
        body = self.parse(messages=[], response_format={"type": "text"}, tools=[], stop=[])
        assert body.options is PLAIN

    @pytest.mark.parametrize(
        "extra",
        [
            {"stop": ["a", "b", "c", "d", "e"]},
            {"tools": [{"type": "function", "function": {"name": "no spaces allowed"}}]},
            {"tool_choice": "sometimes"},
            {"response_format": {"type": "yaml"}},
        ],
        ids=["five-stops", "bad-tool-name", "bad-tool-choice", "bad-format"],
    )
    def test_malformed_options_are_400s(self, extra: dict[str, object]) -> None:
        """Too many stop sequences, a tool name outside OpenAI's pattern, unknown choices: 400s."""
        with pytest.raises(ValidationFailed) as info:
            self.parse(messages=[], **extra)
        assert error_body(info.value)["error"]["param"].split(".")[0] == next(iter(extra))

    def test_options(self) -> None:
        """max_completion_tokens wins over max_tokens; include_usage is read; other fields are ignored."""
        body = self.parse(
            messages=[{"role": "user", "content": "q"}],
            max_tokens=50,
            max_completion_tokens=20,
            temperature=0.3,
            stream=True,
            stream_options={"include_usage": True},
            tools=[],
            user="u1",
        )
        assert (body.token_limit, body.temperature, body.stream, body.include_usage) == (20, 0.3, True, True)
        assert self.parse(messages=[], max_tokens=50).token_limit == 50
        assert self.parse(messages=[]).include_usage is False

    def test_more_than_one_choice_is_refused(self) -> None:
        """n > 1 is a validation error: one choice is generated."""
        with pytest.raises(ValidationFailed):
            self.parse(messages=[], n=2)


class TestChunkStream:
    def test_a_finished_answer_byte_for_byte(self) -> None:
        """Role chunk, content chunks, final chunk with finish_reason and sources on the delta, one [DONE]."""
        stream = ChunkStream("msg_1", 7, include_usage=False)
        raw = frames(
            stream,
            StartEvent(message_id="msg_1", conversation_id=""),
            SourcesEvent(sources=(SOURCE,)),
            TokenEvent(delta="Run"),
            TokenEvent(delta=" it [1]."),
            DONE_EVENT,
        )
        assert raw == (
            line('{"role":"assistant","content":""}', "null")
            + line('{"content":"Run"}', "null")
            + line('{"content":" it [1]."}', "null")
            + line(f'{{"sources":[{SOURCE_JSON}]}}', '"stop"')
            + b"data: [DONE]\n\n"
        )
        for obj in data_objects(raw):
            check_chunk(obj)  # OpenAI's schema and the SDK's strict model accept every chunk

    def test_tool_calls_stream_in_openai_shape(self) -> None:
        """Each tool call is one chunk with delta.tool_calls (index, id, function); the finish says tool_calls."""
        stream = ChunkStream("msg_1", 7, include_usage=True)
        raw = frames(
            stream,
            StartEvent(message_id="msg_1", conversation_id=""),
            ToolCallEvent(index=0, id="call_1", name="weather", arguments='{"city":"Paris"}'),
            ToolCallEvent(index=1, id="call_2", name="time", arguments="{}"),
            DoneEvent(usage=Usage(10, 3), timings={}, finish_reason="tool_calls"),
        )
        chunks = [check_chunk(obj) for obj in data_objects(raw)]
        calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        assert [(t[0].index, t[0].id, t[0].function.name, t[0].function.arguments) for t in calls if t] == [
            (0, "call_1", "weather", '{"city":"Paris"}'),
            (1, "call_2", "time", "{}"),
        ]
        assert chunks[-2].choices[0].finish_reason == "tool_calls"

    def test_usage_chunk_comes_last_before_done(self) -> None:
        """With include_usage, a chunk with empty choices and usage precedes [DONE]."""
        raw = frames(
            ChunkStream("msg_1", 7, include_usage=True),
            StartEvent(message_id="msg_1", conversation_id=""),
            DONE_EVENT,
        )
        blocks = raw.split(b"\n\n")
        assert (
            blocks[-3]
            == (
                f'data: {HEAD}[],"usage":{{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}}}'
            ).encode()
        )
        assert blocks[-2:] == [b"data: [DONE]", b""]
        assert raw.count(DONE) == 1
        usage = ChatCompletionChunk.model_validate(data_objects(raw)[-1]).usage
        assert usage is not None
        assert usage.total_tokens == 13

    def test_a_stopped_answer_ends_cancelled(self) -> None:
        """A stopped answer's last chunk says finish_reason 'cancelled' (not a fake 'stop'), then [DONE]."""
        raw = frames(ChunkStream("msg_1", 7, include_usage=True), TokenEvent(delta="Run"), StoppedEvent())
        assert raw.endswith(line('{"sources":[]}', '"cancelled"') + b"data: [DONE]\n\n")
        assert b"usage" not in raw
        for obj in data_objects(raw):
            check_chunk(obj, allow_cancelled=True)  # valid but for that one value

    def test_an_error_after_tokens_is_an_error_object_and_no_done(self) -> None:
        """A failure after tokens is `data: {"error": ...}` with no finish chunk and no [DONE]."""
        stream = ChunkStream("msg_1", 7, include_usage=True)
        raw = frames(
            stream,
            TokenEvent(delta="Run"),
            ErrorEvent(code="upstream_unavailable", message="The model provider is unavailable."),
        )
        assert raw.endswith(
            b'data: {"error":{"message":"The model provider is unavailable.","type":"server_error",'
            b'"code":"upstream_unavailable","param":null}}\n\n'
        )
        assert DONE not in raw
        assert b'finish_reason":"' not in raw
        assert stream.render(DONE_EVENT) == []  # nothing after the end

    def test_empty_token_renders_nothing(self) -> None:
        """An empty delta produces no chunk."""
        assert ChunkStream("msg_1", 7, include_usage=False).render(TokenEvent(delta="")) == []


class TestCompletion:
    def test_a_finished_answer(self) -> None:
        """The completion carries content, sources on the message, finish_reason and usage."""
        answer = Collected("msg_1", "", "Run it.", (SOURCE,), "stop", usage=Usage(10, 3), model="extractive")
        body = completion_of(answer, 7)
        assert json.dumps(body, separators=(",", ":")) == (
            '{"id":"msg_1","object":"chat.completion","created":7,"model":"chatbot","choices":[{"index":0,'
            '"message":{"role":"assistant","content":"Run it.","refusal":null,"annotations":[],'
            f'"sources":[{SOURCE_JSON}]}},'
            '"logprobs":null,"finish_reason":"stop"}],'
            '"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}'
        )
        parsed = check_completion(body)
        assert parsed.choices[0].message.model_extra == {"sources": [SOURCE.to_dict()]}

    def test_every_required_field_is_checked(self) -> None:
        """The schema oracle itself refuses a completion that omits a required nullable field."""
        body = completion_of(Collected("msg_1", "", "Run it.", (), "stop", usage=Usage(1, 1)), 7)
        del body["choices"][0]["message"]["refusal"]
        with pytest.raises(AssertionError, match="refusal"):
            check_completion(body)

    def test_tool_calls_answer(self) -> None:
        """An answer that only called tools: content null, tool_calls in OpenAI's shape, finish tool_calls."""
        call = ToolCallEvent(index=0, id="call_1", name="weather", arguments='{"city":"Paris"}')
        answer = Collected("msg_1", "", "", (), "tool_calls", usage=Usage(5, 2), tool_calls=(call,))
        parsed = check_completion(completion_of(answer, 7))
        message = parsed.choices[0].message
        assert message.content is None
        assert message.tool_calls is not None
        assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [  # type: ignore[union-attr]
            ("call_1", "weather", '{"city":"Paris"}')
        ]
        assert parsed.choices[0].finish_reason == "tool_calls"

    def test_a_stopped_answer(self) -> None:
        """A stopped answer keeps its text, ends 'cancelled' and has no usage."""
        body = completion_of(Collected("msg_1", "", "Run", (), "stopped", stopped=True), 7)
        check_completion(body, allow_cancelled=True)
        assert body["choices"][0]["finish_reason"] == "cancelled"
        assert body["choices"][0]["message"]["content"] == "Run"
        assert "usage" not in body


class TestErrors:
    @pytest.mark.parametrize(
        ("err", "status", "type_", "param"),
        [
            (InvalidJSON(), 400, "invalid_request_error", None),
            (MessageTooLong(), 400, "invalid_request_error", "messages"),
            (PayloadTooLarge(), 413, "invalid_request_error", None),
            (Unauthorized(), 401, "authentication_error", None),
            (ModelNotFound(), 404, "invalid_request_error", "model"),
            (Busy(retry_after=1.0), 429, "rate_limit_error", None),
            (UpstreamUnavailable(), 502, "server_error", None),
        ],
    )
    def test_status_type_and_param(
        self, err: ChatbotError, status: int, type_: str, param: str | None
    ) -> None:
        """Each error maps to the status the SDK turns into its matching exception, with OpenAI's fields."""
        assert error_status(err) == status
        assert error_body(err) == {
            "error": {"message": err.message, "type": type_, "code": err.code, "param": param}
        }

    def test_error_event_body(self) -> None:
        """An in-stream error uses the same shape, typed by the code's status."""
        assert error_event_body(ErrorEvent(code="first_token_timeout", message="Too slow.")) == {
            "error": {
                "message": "Too slow.",
                "type": "server_error",
                "code": "first_token_timeout",
                "param": None,
            }
        }


class TestModels:
    def test_model_list(self) -> None:
        """GET /v1/models lists the one model id in OpenAI's list shape."""
        body = model_list()
        assert body == {
            "object": "list",
            "data": [{"id": "chatbot", "object": "model", "created": 0, "owned_by": "chatbot"}],
        }
        Model.model_validate(body["data"][0])
