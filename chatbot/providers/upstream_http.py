"""What the OpenAI and Cohere adapters share about upstream HTTP: reading server-sent events from a raw
body, Retry-After, and the mapping of HTTP statuses to chatbot errors."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any

from chatbot.errors import (
    UpstreamAuth,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1 << 20  # an SSE line longer than this is refused rather than buffered


class SSEEvents:
    """Splits a byte stream into the `data` of each server-sent event; refuses lines over MAX_EVENT_BYTES."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, received: bytes) -> list[bytes]:
        lines = (self._buffer + received).split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > MAX_EVENT_BYTES:
            log.warning("%s stream: an event longer than %d bytes", self._provider, MAX_EVENT_BYTES)
            raise UpstreamBadResponse(provider=self._provider)
        events: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                if line.startswith(b"data:"):
                    self._data.append(line[6:] if line[5:6] == b" " else line[5:])
                continue  # comments (":"), event:, id: and retry: lines carry nothing we use
            if self._data:  # a blank line ends an event
                events.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                self._data = []
        return events


async def aclose_iterator(iterator: AsyncIterator[bytes]) -> None:
    """Close a body iterator now rather than leaving it to the garbage collector's finaliser task."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None if absent or odd."""
    headers = {name.lower(): value for name, value in headers.items()}
    if (ms := headers.get("retry-after-ms")) is not None:
        with contextlib.suppress(ValueError):
            if math.isfinite(seconds := float(ms) / 1000) and seconds >= 0:
                return seconds
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def error_for_status(provider: str, status: int, headers: Mapping[str, str]) -> UpstreamError:
    if status == 429:
        return UpstreamRateLimited(provider=provider, retry_after=retry_after(headers))
    if status in (401, 403, 498):  # 498: Cohere's invalid token
        return UpstreamAuth(provider=provider)
    if status in (408, 504):
        return UpstreamTimeout(provider=provider)
    if status >= 500 or status == 499:  # 499: Cohere's "request cancelled upstream"
        return UpstreamUnavailable(provider=provider)
    return UpstreamBadResponse(provider=provider)  # other 4xx, and a 2xx body that was not JSON


_LIMITERS: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def shared_limiter(client: Any, size: int) -> asyncio.Semaphore:
    """One semaphore per SDK client (one client per upstream per process), shared by every adapter on it."""
    limiter = _LIMITERS.get(client)
    if limiter is None:
        limiter = _LIMITERS[client] = asyncio.Semaphore(size)
    return limiter
