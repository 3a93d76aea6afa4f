"""A lossless JSON codec for ChatEvents, for logs kept outside the process (Redis Streams).

The shapes are the event models' (events.py, validated back through their discriminated union); this
module only adds the one step pydantic's own JSON cannot do: text with lone surrogates (a model may split a
surrogate pair across chunks) is not valid UTF-8, so the JSON text is made by the standard library and
encoded with surrogatepass. decode_event(encode_event(e)) == e for every event: floats keep every bit (json
writes repr, and inf/nan as Infinity/NaN), tuples come back as tuples, None stays None. This is storage, not
a wire format: transports render frames with api/wire.py.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from chatbot.events import EVENTS, ChatEvent


class UndecodableEvent(ValueError):
    """Stored bytes that are not an event this codec wrote."""


def encode_event(event: ChatEvent) -> bytes:
    text = json.dumps(EVENTS.dump_python(event), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def decode_event(data: bytes | str) -> ChatEvent:
    try:
        text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
        return EVENTS.validate_python(json.loads(text))
    except (ValueError, ValidationError) as exc:  # ValidationError is a ValueError; named for the reader
        raise UndecodableEvent(f"not a stored chat event: {exc}") from exc
