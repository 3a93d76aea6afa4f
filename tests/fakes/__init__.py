"""Fake upstream servers (OpenAI, Cohere) that the real SDKs talk to over loopback sockets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .scripting import DEFAULT_REPLY, Fault, Latency, Reply, StreamRecord, embed_text

if TYPE_CHECKING:
    from .upstream import FakeCohere, FakeOpenAI, FakeUpstream

__all__ = [
    "DEFAULT_REPLY",
    "FakeCohere",
    "FakeOpenAI",
    "FakeUpstream",
    "Fault",
    "Latency",
    "Reply",
    "StreamRecord",
    "embed_text",
]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m tests.fakes.upstream` does not find its module already imported.
    if name in {"FakeCohere", "FakeOpenAI", "FakeUpstream"}:
        from . import upstream

        return getattr(upstream, name)
    raise AttributeError(name)
