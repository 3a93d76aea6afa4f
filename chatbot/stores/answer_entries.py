"""An answer-cache entry as every engine stores it (stores/qdrant/answer_cache.py on a server or in local mode,
stores/edge/answer_cache.py on Qdrant Edge): its point id, its payload and the CachedAnswer read back from it,
and the id of a tenant's generation marker. The engines differ only in how they write and query points."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from chatbot.stores.base import ScoredChunk
from chatbot.stores.ids import POINT_NAMESPACE
from chatbot.stores.records import CachedAnswer


def generation_id(tenant: str) -> str:
    """The point holding a tenant's current generation (a marker no tenant filter matches)."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"generation\x00{tenant}"))


def entry_id(tenant: str, generation: str, variant: str, question: str) -> str:
    """One entry per question, tenant, generation and variant: storing it again replaces it."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"answer\x00{tenant}\x00{generation}\x00{variant}\x00{question}"))


def entry_payload(
    tenant: str,
    generation: str,
    variant: str,
    *,
    question: str,
    answer: str,
    sources: Sequence[ScoredChunk],
    model: str,
) -> dict[str, Any]:
    """A finished answer as stored, with its scope (tenant, generation, variant) and its creation time."""
    return {
        "tenant": tenant,
        "generation": generation,
        "variant": variant,
        "question": question,
        "answer": answer,
        "sources": [entry(n, s) for n, s in enumerate(sources, start=1)],
        "model": model,
        "created": time.time(),
    }


def cached_answer(payload: Mapping[str, Any], score: float) -> CachedAnswer:
    """The CachedAnswer a stored payload holds (missing fields read as empty)."""
    return CachedAnswer(
        question=str(payload.get("question", "")),
        answer=str(payload.get("answer", "")),
        sources=tuple(source_chunk(s) for s in payload.get("sources", [])),
        model=str(payload.get("model", "")),
        score=float(score),
    )


def entry(n: int, chunk: ScoredChunk) -> dict[str, Any]:
    """A source as stored: the chunk's fields with its citation number (the layout of a wire source)."""
    return {
        "n": n,
        "doc_id": chunk.doc_id,
        "source": chunk.source,
        "title": chunk.title,
        "heading_path": list(chunk.heading_path),
        "chunk_index": chunk.chunk_index,
        "text": chunk.text,
        "score": round(chunk.score, 6),
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
    }


def source_chunk(entry: dict[str, Any]) -> ScoredChunk:
    return ScoredChunk.from_payload(entry, float(entry.get("score", 0.0)))
