"""The stored form of chat events is lossless: decode(encode(event)) == event for every event."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.api.wire import dumps, event_frame, server_frames_schema
from chatbot.events import (
    EVENTS,
    WIRE,
    ChatEvent,
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
    Usage,
)
from chatbot.stores.event_codec import UndecodableEvent, decode_event, encode_event

FRAMES = jsonschema.Draft202012Validator(server_frames_schema())
texts = st.text()  # any code points, lone surrogates included
finite = st.floats(allow_nan=False)
counts = st.integers(min_value=0, max_value=2**53)
sources = st.builds(
    Source,
    n=counts,
    doc_id=texts,
    source=texts,
    title=texts,
    heading_path=st.lists(texts, max_size=4).map(tuple),
    chunk_index=counts,
    text=texts,
    score=finite,
)
events: st.SearchStrategy[ChatEvent] = st.one_of(
    st.builds(StartEvent, message_id=texts, conversation_id=texts),
    st.builds(SourcesEvent, sources=st.lists(sources, max_size=4).map(tuple)),
    st.builds(TokenEvent, delta=texts),
    st.builds(
        DoneEvent,
        usage=st.builds(Usage, prompt_tokens=counts, completion_tokens=counts),
        timings=st.dictionaries(texts, finite, max_size=5),
        finish_reason=texts,
        model=texts,
        cached=st.booleans(),
    ),
    st.builds(StoppedEvent, reason=texts),
    st.builds(ErrorEvent, code=texts, message=texts, retry_after=st.none() | finite),
)


class TestRoundTrip:
    @given(events)
    def test_every_event_survives(self, event: ChatEvent) -> None:
        """Any event, with any text and any finite float, decodes to an equal event of the same type."""
        back = decode_event(encode_event(event))
        assert back == event
        assert type(back) is type(event)

    @given(st.lists(sources, min_size=1, max_size=3))
    def test_tuples_stay_tuples(self, items: list[Source]) -> None:
        """Sources and heading paths come back as tuples (the dataclasses are hashable again)."""
        back = decode_event(encode_event(SourcesEvent(sources=tuple(items))))
        assert isinstance(back, SourcesEvent)
        assert isinstance(back.sources, tuple)
        assert all(isinstance(s.heading_path, tuple) for s in back.sources)
        hash(back)

    def test_floats_keep_every_bit(self) -> None:
        """Scores and timings are not rounded (the wire format rounds; storage must not)."""
        source = Source(1, "d", "s", "t", (), 0, "x", 0.1 + 0.2)
        back = decode_event(encode_event(SourcesEvent(sources=(source,))))
        assert isinstance(back, SourcesEvent)
        assert back.sources[0].score.hex() == (0.1 + 0.2).hex()

    def test_a_split_surrogate_pair_survives(self) -> None:
        """A token that ends in half of a surrogate pair (a model split an emoji) round-trips."""
        event = TokenEvent(delta="smile \ud83d")
        assert decode_event(encode_event(event)) == event

    def test_non_finite_floats_survive(self) -> None:
        """inf and nan in timings are kept (compared by bits, since nan != nan)."""
        back = decode_event(encode_event(DoneEvent(usage=Usage(), timings={"a": math.inf, "b": math.nan})))
        assert isinstance(back, DoneEvent)
        assert back.timings["a"] == math.inf
        assert math.isnan(back.timings["b"])

    def test_the_stored_form_is_compact_utf8_json(self) -> None:
        """Non-ASCII text is stored as UTF-8, not as \\u escapes; the JSON names the event type."""
        data = encode_event(TokenEvent(delta="é✓"))
        assert data == '{"type":"token","delta":"é✓"}'.encode()
        assert json.loads(data)["type"] == "token"


class TestRejects:
    @pytest.mark.parametrize(
        "data",
        [
            b"not json",
            b'{"type":"nope"}',
            b'{"type":"token"}',
            b'{"type":"token","delta":5}',
            b'{"type":"done","usage":[1],"timings":{},"finish_reason":"stop","model":"","cached":false}',
            b'{"type":"done","usage":{"prompt_tokens":"many"},"timings":{},"model":"","cached":false}',
            b'{"type":"done","usage":{},"timings":[],"finish_reason":"stop","model":"","cached":false}',
            b'{"type":"token","delta":"x","extra":1}',
            b'{"type":"sources","sources":[[1,"d"]]}',
            b'{"delta":"x"}',
            b"[1, 2]",
            b"\xff\xfe",
        ],
    )
    def test_bytes_that_are_not_a_stored_event(self, data: bytes) -> None:
        """Anything the codec did not write raises UndecodableEvent, never a half-built event."""
        with pytest.raises(UndecodableEvent):
            decode_event(data)


class TestWireForm:
    @given(events)
    def test_a_frame_is_the_event_plus_its_ids(self, event: ChatEvent) -> None:
        """A native frame is the event's fields with message_id and seq (tokens' fast path included)."""
        frame = event_frame("msg_1", 7, event)
        generic = EVENTS.dump_python(event, mode="json", context=WIRE, exclude_none=True)
        assert frame == {**generic, "message_id": "msg_1", "seq": 7}
        assert frame["type"] == event.type

    @settings(deadline=None)  # validating against a 2020-12 schema is slow on a loaded machine
    @given(events)
    def test_every_frame_matches_the_documented_schema(self, event: ChatEvent) -> None:
        """server_frames_schema() (what the docs publish) accepts every frame the server sends."""
        FRAMES.validate(json.loads(dumps(event_frame("msg_1", 3, event))))

    def test_the_wire_rounds_scores_and_totals_usage(self) -> None:
        """Scores are rounded to 6 places on the wire (storage keeps every bit); usage carries its total."""
        source = Source(1, "d", "s", "t", (), 0, "x", 0.1 + 0.2)
        assert event_frame("m", 1, SourcesEvent(sources=(source,)))["sources"][0]["score"] == 0.3
        done = event_frame("m", 2, DoneEvent(usage=Usage(3, 4), timings={}))
        assert done["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
