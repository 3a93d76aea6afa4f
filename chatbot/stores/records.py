"""The records a VectorStore and an AnswerCache take and return: query vectors and the search plan, chunks as
stored (their payload), search hits and their JSON form, document summaries, cached answers, and
conversation turns. Plain data, no engine: every store implementation and every caller share these shapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chatbot.providers.base import SparseVector
from chatbot.stores.ids import point_id

SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]


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

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ChunkRecord:
        """The record a point's payload was written from (payload()'s inverse: a reindex reads it back)."""
        return cls(
            tenant=str(payload["tenant"]),
            doc_id=str(payload["doc_id"]),
            source=str(payload["source"]),
            title=str(payload.get("title", "")),
            heading_path=tuple(str(h) for h in payload.get("heading_path") or ()),
            chunk_index=int(payload["chunk_index"]),
            text=str(payload["text"]),
            content_hash=str(payload["content_hash"]),
            version=str(payload["version"]),
            page_start=payload.get("page_start"),
            page_end=payload.get("page_end"),
            char_start=int(payload.get("char_start") or 0),
            char_end=int(payload.get("char_end") or 0),
            metadata=payload.get("metadata") or {},
        )


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


def one_per_index(hits: Iterable[ScoredChunk]) -> list[ScoredChunk]:
    """Chunks in index order, one per chunk index (a passage read while a document is being replaced)."""
    by_index = {h.chunk_index: h for h in hits}
    return [by_index[i] for i in sorted(by_index)]


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


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    question: str
    answer: str
    sources: tuple[ScoredChunk, ...]  # in the answer's order: the first is cited as [1]
    model: str
    score: float


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
