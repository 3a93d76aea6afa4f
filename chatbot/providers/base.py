"""Provider seams: small Protocols with one core method each. Nothing above providers/ sees an SDK type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

EmbedKind = Literal["query", "document"]


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved passage as the chat model sees it: its citation number and text."""

    n: int
    text: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything a chat model may use. LLMs read `messages` (rendered from prompts/);
    the offline extractive model reads `question` and `passages` directly."""

    messages: Sequence[ChatMessage]
    question: str
    passages: Sequence[Passage] = ()
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """A piece of a streamed reply. The last chunk may carry usage and finish_reason with an empty delta."""

    delta: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None  # set by a model that answers for others (failover): who actually answered


@dataclass(frozen=True, slots=True)
class RankedPassage:
    index: int
    score: float


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into dense vectors, batch first."""

    name: str  # identity of the vector space, e.g. "local/all-MiniLM-L6-v2-int8"; recorded on collections
    dimensions: int
    distance: Literal["cosine", "dot"]

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]: ...


@runtime_checkable
class SparseEmbedder(Protocol):
    """Turns texts into sparse (BM25-style term) vectors; Qdrant applies IDF with the IDF modifier."""

    name: str

    async def embed_sparse(self, texts: Sequence[str], kind: EmbedKind) -> list[SparseVector]: ...


@runtime_checkable
class ChatModel(Protocol):
    """Streams a reply. Closing the iterator early must close the upstream stream."""

    name: str
    max_context_tokens: int

    def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...


@runtime_checkable
class Reranker(Protocol):
    name: str

    async def rerank(self, query: str, passages: Sequence[str], top_n: int) -> list[RankedPassage]: ...
