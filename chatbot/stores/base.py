"""What the rest of the app knows about storage: the Protocols every store implements.

- VectorStore        chunks with dense (and BM25) vectors, searched per tenant  (edge/: EdgeStore, the
                     embedded engine; qdrant/: QdrantStore for servers, MirroredStore)
- EventLog           per-answer event logs with sequence numbers                 (memory.py, redis/)
- ConversationStore  conversation history per tenant                             (memory.py, redis/)
- Counters           rate limits, budgets, concurrency slots                    (memory.py, redis/)
- AnswerCache        finished answers under their question's vector              (qdrant/, edge/answer_cache.py)
- FeedbackStore      answered turns and their ratings                            (memory.py, redis/)

The records they take and return live in records.py and feedback.py, ids and the tenant guard in ids.py;
the records most callers use are re-exported here. Nothing here imports an engine: callers above stores/
see these types and never a qdrant or redis one. Every VectorStore read or delete takes the tenant first
and refuses an empty one (`ids.check_tenant`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from chatbot.events import ChatEvent
from chatbot.providers.base import SparseVector
from chatbot.stores.feedback import AnsweredTurn, Feedback
from chatbot.stores.filters import Metadata, MetadataFilter
from chatbot.stores.records import (
    CachedAnswer,
    ChunkRecord,
    DocumentInfo,
    Fusion,
    QueryVectors,
    ScoredChunk,
    SearchMode,
    Turn,
)

# the records most callers import from here (the filter language lives in stores/filters.py)
__all__ = [
    "AnsweredTurn",
    "ChunkRecord",
    "Feedback",
    "Metadata",
    "MetadataFilter",
    "QueryVectors",
    "ScoredChunk",
    "SearchMode",
]


StoredChunk = tuple[ChunkRecord, SparseVector | None]  # a chunk as stored, with its BM25 vector (reindex)


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

    async def recorded_model(self) -> str | None:
        """The dense model the collection records it was built with; None before it exists (chooses the
        embedder at start-up: providers/registry.choose_embedder)."""
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

    # -- rebuilding the collection (python -m chatbot reindex: ingest/reindex.py) ------------------------

    def stream_chunks(self) -> AsyncIterator[list[StoredChunk]]:
        """Every chunk of every tenant with its BM25 vector, a page at a time."""
        ...

    def staging(self, label: str) -> VectorStore:
        """A store on a new collection beside this one, on the same connection (ensure_collection creates
        it): a rebuild fills it while this one keeps serving."""
        ...

    async def promote(self, staged: VectorStore, on_switch: Callable[[], None]) -> None:
        """Serve `staged`'s collection under this store's name from now on, switching at once for readers
        (`on_switch` runs synchronously at that moment), then drop the collection served until now."""
        ...

    async def discard(self, staged: VectorStore) -> None:
        """Drop a staged collection that will not be promoted (a cancelled or failed rebuild)."""
        ...


# -- answer cache -----------------------------------------------------------------------------------


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
