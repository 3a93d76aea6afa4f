"""What the rest of the app knows about storage: four Protocols, an answer cache Protocol and plain records.

- VectorStore        chunks with dense (and BM25) vectors, searched per tenant  (qdrant/: QdrantStore,
                     MirroredStore)
- EventLog           per-answer event logs with sequence numbers                 (memory.py, redis/)
- ConversationStore  conversation history per tenant                             (memory.py, redis/)
- Counters           rate limits, budgets, concurrency slots                    (memory.py, redis/)
- AnswerCache        finished answers under their question's vector              (qdrant/answer_cache.py)

Nothing here imports an engine: callers above stores/ see these types and never a qdrant or redis one.
Every VectorStore read or delete takes the tenant first and refuses an empty one (`check_tenant`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chatbot.providers.base import SparseVector
from chatbot.rag.events import ChatEvent
from chatbot.stores.filters import Metadata, MetadataFilter

__all__ = ["Metadata", "MetadataFilter"]  # the filter language lives in stores/filters.py

SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]
POINT_NAMESPACE = uuid.UUID("6f0c2a52-52a4-4cf4-9d55-4f7d0b5a8a11")


def check_tenant(tenant: str) -> str:
    """The guard every tenant-scoped store call passes: an empty tenant raises instead of matching all."""
    if not tenant or not isinstance(tenant, str):
        raise ValueError("a tenant is required for every vector store query")
    return tenant


def document_id(tenant: str, source: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"doc\x00{tenant}\x00{source}"))


def point_id(tenant: str, source: str, chunk_index: int, content_hash: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}\x00{source}\x00{chunk_index}\x00{content_hash}"))


# -- vector store records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueryVectors:
    """One query as vectors. Several of them (e.g. raw and rewritten question) are fused in one call."""

    dense: Sequence[float] | None = None
    sparse: SparseVector | None = None


def search_probes(
    queries: Sequence[QueryVectors], mode: SearchMode, *, has_sparse: bool
) -> list[QueryVectors]:
    """The single-vector searches one search call runs, in order: per query its dense vector (dense, hybrid)
    then its BM25 vector (sparse, hybrid; only when the collection has sparse vectors and it has terms).
    One probe is answered as it is; several are fused. Every VectorStore implementation plans with this."""
    probes: list[QueryVectors] = []
    for q in queries:
        if mode in ("dense", "hybrid") and q.dense is not None:
            probes.append(QueryVectors(dense=q.dense))
        if mode in ("sparse", "hybrid") and q.sparse is not None and has_sparse and q.sparse.indices:
            probes.append(QueryVectors(sparse=q.sparse))
    return probes


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One chunk ready to store."""

    tenant: str
    doc_id: str
    source: str
    title: str
    heading_path: tuple[str, ...]
    chunk_index: int
    text: str
    content_hash: str
    version: str
    page_start: int | None = None  # PDF page or slide number, None for unpaged formats
    page_end: int | None = None
    char_start: int = 0  # the chunk's span in the document's extracted text
    char_end: int = 0
    metadata: Mapping[str, Any] | None = None  # the document's metadata (stores/filters.py), on every chunk

    @property
    def point_id(self) -> str:
        return point_id(self.tenant, self.source, self.chunk_index, self.content_hash)

    def payload(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "heading_path": list(self.heading_path),
            "chunk_index": self.chunk_index,
            "text": self.text,
            "content_hash": self.content_hash,
            "version": self.version,
            "page_start": self.page_start,
            "page_end": self.page_end,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "metadata": dict(self.metadata or {}),
        }


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A search hit: a stored chunk and its score (cosine, BM25 or fused, by the search mode)."""

    doc_id: str
    source: str
    title: str
    heading_path: tuple[str, ...]
    chunk_index: int
    text: str
    score: float
    # where the chunk is in its document, when the loader knows (pages: PDFs and slides; characters: the
    # chunk's span in the extracted text): None otherwise
    page_start: int | None = None
    page_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], score: float) -> ScoredChunk:
        """A stored chunk payload (see ChunkRecord.payload) as a hit; missing fields read as empty."""
        metadata = payload.get("metadata")
        return cls(
            doc_id=str(payload.get("doc_id", "")),
            source=str(payload.get("source", "")),
            title=str(payload.get("title", "")),
            heading_path=tuple(payload.get("heading_path") or ()),
            chunk_index=int(payload.get("chunk_index", 0)),
            text=str(payload.get("text", "")),
            score=float(score),
            page_start=_optional_int(payload.get("page_start")),
            page_end=_optional_int(payload.get("page_end")),
            char_start=_optional_int(payload.get("char_start")),
            char_end=_optional_int(payload.get("char_end")),
            metadata=dict(metadata) if isinstance(metadata, dict) else {},
        )

    def to_dict(self) -> dict[str, Any]:
        """A search hit or passage chunk as JSON (POST /v1/search, the passage route, MCP tools)."""
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "heading_path": list(self.heading_path),
            "chunk_index": self.chunk_index,
            "page_start": self.page_start,
            "page_end": self.page_end,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "metadata": dict(self.metadata),
            "text": self.text,
            "score": round(self.score, 6),
        }


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    doc_id: str
    source: str
    title: str
    chunks: int
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "chunks": self.chunks,
            "version": self.version,
        }


class VectorStore(Protocol):
    """Chunks of every tenant's documents with their vectors. Lifecycle: open(), ensure_collection(), aclose()."""

    @property
    def has_sparse(self) -> bool:
        """The collection holds BM25 vectors (sparse and hybrid search are possible)."""
        ...

    async def open(self) -> None: ...

    async def ensure_collection(self, dense_model: str, dimensions: int, *, sparse: bool) -> None:
        """Create the collection on first use; refuse one that was filled by another embedding model."""
        ...

    async def ping(self) -> bool:
        """True when the store answers and the collection exists."""
        ...

    async def aclose(self) -> None: ...

    async def search(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        *,
        mode: SearchMode,
        limit: int,
        prefetch_limit: int = 40,
        score_threshold: float | None = None,
        fusion: Fusion = "rrf",
        where: MetadataFilter | None = None,
    ) -> list[ScoredChunk]:
        """The best `limit` chunks of `tenant` for the probes of `search_probes` (fused when several),
        among the chunks whose metadata `where` matches (the tenant scope always applies)."""
        ...

    async def chunks(self, tenant: str, doc_id: str, first: int, last: int) -> list[ScoredChunk]:
        """The chunks of one document with first <= chunk_index <= last, in order (score 0): a cited
        passage with its neighbours. Empty for an unknown or other tenant's document."""
        ...

    async def versions_of(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored `version` of each id that exists."""
        ...

    async def set_version(
        self, ids: Sequence[str], version: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Relabel kept chunks with a new version and the document's (possibly changed) metadata."""
        ...

    async def upsert(
        self,
        records: Sequence[ChunkRecord],
        dense: Sequence[Sequence[float]],
        sparse: Sequence[SparseVector] | None,
    ) -> None: ...

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        """Remove chunks of older versions of a document (after the new version is fully written)."""
        ...

    async def delete_document(self, tenant: str, doc_id: str) -> int:
        """Remove every chunk of a document; returns how many there were."""
        ...

    async def list_documents(self, tenant: str) -> list[DocumentInfo]: ...

    async def count(self, tenant: str) -> int: ...


# -- answer cache -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    question: str
    answer: str
    sources: tuple[ScoredChunk, ...]  # in the answer's order: the first is cited as [1]
    model: str
    score: float


class AnswerCache(Protocol):
    """Finished answers per tenant and *generation*: a change to a tenant's documents starts a new generation,
    so an answer computed before the change is never served after it. An answer is found only under the
    *variant* it was stored with (model, prompts, generation parameters: rag.cached_answers.cache_variant)."""

    async def generation(self, tenant: str) -> str: ...

    async def lookup(
        self, tenant: str, generation: str, variant: str, vector: Sequence[float]
    ) -> CachedAnswer | None: ...

    async def store_answer(
        self,
        tenant: str,
        generation: str,
        variant: str,
        vector: Sequence[float],
        *,
        question: str,
        answer: str,
        sources: Sequence[ScoredChunk],
        model: str,
    ) -> None: ...

    async def invalidate(self, tenant: str) -> None:
        """A tenant's documents changed: a new generation, and its old entries are dropped."""
        ...


# -- event log --------------------------------------------------------------------------------------


class EventLog(Protocol):
    """Per-answer event logs with sequence numbers. Connections are readers; an answer is the only writer."""

    def create(self, message_id: str, tenant: str) -> None: ...

    def append(self, message_id: str, event: ChatEvent) -> int:
        """Add an event; returns its sequence number (1, 2, ...). Never blocks."""
        ...

    def read(self, message_id: str, tenant: str, after: int = 0) -> AsyncIterator[tuple[int, ChatEvent]]:
        """Every event with seq > after, in order, waiting for new ones until the terminal event.
        Raises UnknownMessage for an unknown, expired or other tenant's message."""
        ...

    async def tenant_of(self, message_id: str) -> str | None: ...

    async def check(self, message_id: str, tenant: str, after: int) -> None:
        """Raise UnknownMessage unless read(message_id, tenant, after) can start."""
        ...

    async def aclose(self) -> None: ...


# -- conversations ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str
    message_id: str = ""
    stopped: bool = False
    error: str | None = None
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "message_id": self.message_id,
            "stopped": self.stopped,
            "error": self.error,
            "created": self.created,
        }


def new_conversation_id() -> str:
    return uuid.uuid4().hex


class ConversationStore(Protocol):
    async def create(self, tenant: str) -> str: ...

    async def exists(self, tenant: str, conversation_id: str) -> bool: ...

    async def history(self, tenant: str, conversation_id: str, limit: int) -> list[Turn]:
        """The last `limit` turns, oldest first; UnknownConversation if there is no such conversation."""
        ...

    async def append(self, tenant: str, conversation_id: str, turns: list[Turn]) -> None: ...


# -- counters ---------------------------------------------------------------------------------------


class Counters(Protocol):
    """Counters for rate limits, budgets and concurrency slots (memory.py: one process; redis/: shared).

    - hit():     a sliding window log: at most `limit` hits in any `window_seconds`. Refused hits are not
                 counted. Memory is O(limit) per key: meant for request rates, not token counts.
    - add():     a running total in a fixed window aligned to the epoch (a 86400 s window resets at 00:00
                 UTC); add(key, 0, window) reads it. For token budgets.
    - acquire(): one of `limit` concurrency slots. Each slot expires `ttl` seconds after it was taken, so a
                 crashed instance leaks nothing; choose ttl longer than the longest hold (an answer's
                 deadline). release() gives back a slot this instance took under that key.
    """

    async def hit(self, key: str, limit: int, window_seconds: float) -> float | None:
        """Count a hit. None if it is within the limit, else seconds until a hit would be allowed."""
        ...

    async def add(self, key: str, amount: int, window_seconds: float) -> int:
        """Add `amount` to the total of the current window; returns the new total."""
        ...

    async def acquire(self, key: str, limit: int, ttl: float) -> bool:
        """Take a slot if fewer than `limit` are held; it frees itself after `ttl` seconds."""
        ...

    async def release(self, key: str) -> None:
        """Give back one slot this process holds under `key` (nothing if it holds none)."""
        ...


def check_limit(limit: int, seconds: float) -> None:
    """The argument check every Counters implementation makes."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if seconds <= 0:
        raise ValueError("a window or ttl must be positive")


# -- feedback ---------------------------------------------------------------------------------------

Rating = Literal["up", "down"]
FEEDBACK_REASONS: tuple[str, ...] = (
    "incorrect",
    "incomplete",
    "irrelevant_sources",
    "missing_sources",
    "outdated",
    "too_long",
    "unsafe",
    "other",
)
"""The reason codes a rating may carry (a fixed enum: label values and exports stay bounded)."""


@dataclass(frozen=True, slots=True)
class AnsweredTurn:
    """What a rating is about: the question, the answer as the user saw it and its sources (wire form)."""

    tenant: str
    message_id: str
    question: str
    answer: str
    sources: tuple[dict[str, Any], ...] = ()
    model: str = ""
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "message_id": self.message_id,
            "question": self.question,
            "answer": self.answer,
            "sources": list(self.sources),
            "model": self.model,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnsweredTurn:
        return cls(
            tenant=str(data["tenant"]),
            message_id=str(data["message_id"]),
            question=str(data["question"]),
            answer=str(data["answer"]),
            sources=tuple(data.get("sources") or ()),
            model=str(data.get("model", "")),
            created=float(data.get("created", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Feedback:
    """One user's rating of one answer; a later rating by the same user replaces it."""

    message_id: str
    user: str
    rating: Rating
    comment: str = ""
    reasons: tuple[str, ...] = ()
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "user": self.user,
            "rating": self.rating,
            "comment": self.comment,
            "reasons": list(self.reasons),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feedback:
        rating = data["rating"]
        if rating not in ("up", "down"):
            raise ValueError(f"unknown rating {rating!r}")
        return cls(
            message_id=str(data["message_id"]),
            user=str(data["user"]),
            rating=rating,
            comment=str(data.get("comment", "")),
            reasons=tuple(data.get("reasons") or ()),
            created=float(data.get("created", 0.0)),
        )


class FeedbackStore(Protocol):
    """Answered turns (kept for a while, so they can be rated) and the ratings given to them, per tenant.

    An answer's record is written when it ends; a rating is accepted only for a recorded answer of the same
    tenant, and stored with it (memory.py: bounded, one process; redis/feedback.py: shared, expiring)."""

    async def record(self, turn: AnsweredTurn) -> None: ...

    async def turn(self, tenant: str, message_id: str) -> AnsweredTurn | None:
        """The tenant's recorded answer, or None (unknown, expired or another tenant's)."""
        ...

    async def rate(self, tenant: str, feedback: Feedback) -> bool:
        """Store `feedback` with its answer, replacing the same user's earlier rating (then returns True)."""
        ...

    def rated(self, tenant: str | None = None) -> AsyncIterator[tuple[AnsweredTurn, list[Feedback]]]:
        """Every rated answer (of `tenant`, or of all tenants) with its ratings, oldest answer first."""
        ...
