"""Ingestion: file bytes -> parsed sections -> chunks -> vectors -> points, idempotently.

Point ids are uuid5(tenant, source, chunk index, chunk hash) and a document's `version` is derived from its
chunk ids, so re-ingesting the same content writes nothing. A changed document is written new-version-first
(missing chunks embedded and upserted, kept chunks re-labelled), then older versions' chunks are deleted:
a crash at any point leaves the previous version searchable, and a re-run converges.
Parsing and chunking run in a worker thread; embedding runs in the embedder's own worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbot.errors import PayloadTooLarge
from chatbot.ingest.chunking import chunk_document
from chatbot.ingest.loaders import SUPPORTED_SUFFIXES, load_document
from chatbot.providers.base import Embedder, SparseEmbedder
from chatbot.stores.base import AnswerCache, ChunkRecord, VectorStore, document_id, point_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestResult:
    doc_id: str
    source: str
    title: str
    chunks: int
    written: int  # chunks embedded and upserted now (0 when unchanged)
    unchanged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "chunks": self.chunks,
            "written": self.written,
            "unchanged": self.unchanged,
        }


class Ingestor:
    def __init__(
        self,
        *,
        embedder: Embedder,
        sparse: SparseEmbedder | None,
        store: VectorStore,
        batch_size: int = 64,
        max_bytes: int = 20 * 1024 * 1024,
        cache: AnswerCache | None = None,
    ) -> None:
        self.cache = cache  # invalidated whenever a tenant's documents change
        self.embedder = embedder
        self.sparse = sparse
        self.store = store
        self.batch_size = batch_size
        self.max_bytes = max_bytes

    async def ingest_bytes(
        self,
        tenant: str,
        source: str,
        data: bytes,
        *,
        on_chunks: Callable[[int], None] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> IngestResult:
        """Ingest one document; `metadata` (validated: stores.base.Metadata) is stored on every chunk and
        is part of the version, so a changed metadata relabels the chunks without embedding them again."""
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"{source} is larger than {self.max_bytes} bytes.")
        doc, chunks = await asyncio.to_thread(_parse_and_chunk, source, data, self.max_bytes)
        doc_id = document_id(tenant, source)
        ids = [point_id(tenant, source, c.index, c.content_hash) for c in chunks]
        meta = dict(metadata or {})
        signed = "\n".join(ids) + (f"\n{json.dumps(meta, sort_keys=True)}" if meta else "")
        version = hashlib.sha256(signed.encode()).hexdigest()[:16]
        records = [
            ChunkRecord(
                tenant,
                doc_id,
                source,
                doc.title,
                c.heading_path,
                c.index,
                c.text,
                c.content_hash,
                version,
                metadata=meta,
            )
            for c in chunks
        ]
        embed_texts = {pid: c.embed_text for pid, c in zip(ids, chunks, strict=True)}
        stored = await self.store.versions_of(ids)
        missing = [r for r in records if r.point_id not in stored]
        relabel = [i for i, v in stored.items() if v != version]
        if not missing and not relabel:
            await self.store.delete_stale(tenant, doc_id, version)
            if on_chunks:
                on_chunks(len(records))
            return IngestResult(doc_id, source, doc.title, len(records), 0, unchanged=True)
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            texts = [embed_texts[r.point_id] for r in batch]
            dense = await self.embedder.embed(texts, "document")
            sparse = (
                await self.sparse.embed_sparse(texts, "document")
                if self.sparse and self.store.has_sparse
                else None
            )
            await self.store.upsert(batch, dense, sparse)
            if on_chunks:
                on_chunks(len(batch))
        await self.store.set_version(relabel, version, metadata=meta)
        await self.store.delete_stale(tenant, doc_id, version)
        if self.cache is not None:
            await self.cache.invalidate(tenant)
        if on_chunks:
            on_chunks(len(records) - len(missing))
        return IngestResult(doc_id, source, doc.title, len(records), len(missing), unchanged=False)

    async def delete(self, tenant: str, doc_id: str) -> int:
        """Delete a document's chunks (all versions); returns how many there were."""
        deleted = await self.store.delete_document(tenant, doc_id)
        if deleted and self.cache is not None:
            await self.cache.invalidate(tenant)
        return deleted

    async def ingest_paths(
        self,
        tenant: str,
        paths: Sequence[Path],
        *,
        on_chunks: Callable[[int], None] | None = None,
        root: Path | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[IngestResult]:
        results = []
        for path in expand_paths(paths):
            data = await asyncio.to_thread(path.read_bytes)
            source = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
            results.append(
                await self.ingest_bytes(tenant, source, data, on_chunks=on_chunks, metadata=metadata)
            )
        return results


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and every supported file below each directory, in a stable order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
            )
        else:
            out.append(p)
    return out


def _parse_and_chunk(source: str, data: bytes, max_bytes: int) -> tuple[Any, list[Any]]:
    doc = load_document(source, data, max_bytes=max_bytes)
    return doc, chunk_document(doc)
