"""What a test can script on a fake upstream (reply, latency, faults) and what the fake records (streams)."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field, fields
from typing import Literal

DEFAULT_REPLY = "Based on the documentation, the setting lives in the configuration file [1]."

_WORD = re.compile(r"[a-z0-9]+")
_PIECE = re.compile(r"\s*\S+")


def embed_text(text: str, dimensions: int) -> list[float]:
    """A hashed bag of words, L2-normalised: deterministic, and texts that share words are close."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector[h % dimensions] += 1.0 if h >> 63 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def count_words(text: str) -> int:
    return len(_PIECE.findall(text))


@dataclass
class Latency:
    """Delays the fake adds, in milliseconds."""

    embed_ms: float = 0.0
    rerank_ms: float = 0.0
    first_token_ms: float = 0.0
    token_ms: float = 0.0


@dataclass
class Reply:
    """The chat reply. `tokens` stretches or cuts `text` to exactly that many tokens (word pieces)."""

    text: str = DEFAULT_REPLY
    tokens: int | None = None
    prompt_tokens: int | None = None  # default: the words in the request's messages
    finish_reason: str = "stop"  # OpenAI vocabulary; the Cohere fake maps stop/length to COMPLETE/MAX_TOKENS
    usage: bool = True  # False: act like a server that never reports usage (ignores include_usage)

    def pieces(self) -> list[str]:
        pieces = _PIECE.findall(self.text) or [self.text]
        if self.tokens is None:
            return pieces
        spaced = [p if p[:1].isspace() else " " + p for p in pieces]
        return list(itertools.islice(itertools.chain(pieces, itertools.cycle(spaced)), self.tokens))


FaultKind = Literal[
    "status", "slow_headers", "slow_first_chunk", "drop_after", "malformed_after", "oversized_after"
]


@dataclass(frozen=True)
class Fault:
    """One injected failure, consumed by the next request whose path starts with `path`.

    status:           answer `status` (with Retry-After if set) instead of the normal response
    slow_headers:     wait `seconds` before sending anything
    slow_first_chunk: send headers, then wait `seconds` before the first chunk
    drop_after:       close the socket after `tokens` tokens, without the final chunk
    malformed_after:  after `tokens` tokens, send a data line that is not JSON (then carry on)
    oversized_after:  after `tokens` tokens, send one valid event carrying `size` bytes of text
    """

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    tokens: int = 0
    size: int = 2 * 1024 * 1024
    path: str = ""

    @classmethod
    def http_status(cls, status: int, *, retry_after: str | None = None, path: str = "") -> Fault:
        return cls("status", status=status, retry_after=retry_after, path=path)

    @classmethod
    def slow_headers(cls, seconds: float, *, path: str = "") -> Fault:
        return cls("slow_headers", seconds=seconds, path=path)

    @classmethod
    def slow_first_chunk(cls, seconds: float, *, path: str = "") -> Fault:
        return cls("slow_first_chunk", seconds=seconds, path=path)

    @classmethod
    def drop_after(cls, tokens: int, *, path: str = "") -> Fault:
        return cls("drop_after", tokens=tokens, path=path)

    @classmethod
    def malformed_after(cls, tokens: int, *, path: str = "") -> Fault:
        return cls("malformed_after", tokens=tokens, path=path)

    @classmethod
    def oversized_after(cls, tokens: int, *, size: int = 2 * 1024 * 1024, path: str = "") -> Fault:
        return cls("oversized_after", tokens=tokens, size=size, path=path)

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """From a header value such as `status=429;retry_after=2`, `drop_after=3` or `slow_headers=1.5`."""
        items = [part.split("=", 1) for part in spec.split(";") if part.strip()]
        kind, first = items[0][0].strip(), items[0][1].strip() if len(items[0]) > 1 else ""
        values: dict[str, str] = {k.strip(): v.strip() for k, v in items[1:]}
        main = {"status": "status", "slow_headers": "seconds", "slow_first_chunk": "seconds"}.get(
            kind, "tokens"
        )
        values[main] = first
        kwargs: dict[str, object] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, raw in values.items():
            kwargs[name] = {"int": int, "float": float}.get(str(types[name]), str)(raw)
        return cls(kind, **kwargs)  # type: ignore[arg-type]


@dataclass
class StreamRecord:
    """What happened to one streamed response, as the fake saw it (times are time.monotonic())."""

    api: str
    path: str
    started_at: float
    headers_at: float | None = None
    first_token_at: float | None = None
    tokens: int = 0  # content tokens sent
    events: int = 0  # SSE events sent, tokens included
    completed: bool = False  # the final chunk was sent
    completed_at: float | None = None
    dropped: bool = False  # the fake closed the socket (a drop fault)
    client_closed_at: float | None = None  # the client closed or reset the connection before the end
    request_json: object = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.completed or self.dropped or self.client_closed_at is not None
