"""Ingestion: file bytes -> parsed sections -> chunks -> vectors -> points, idempotently.

Point ids are uuid5(tenant, source, chunk index, chunk hash) and a document's `version` is derived from its
chunk ids, so re-ingesting the same content writes nothing. A changed document is written new-version-first
(missing chunks embedded and upserted, kept chunks re-labelled), then older versions' chunks are deleted:
a crash at any point leaves the previous version searchable, and a re-run converges.
Parsing and chunking run in a budgeted worker process (parsing.py; small text files in a thread); embedding
runs in the embedder's own worker, overlapping with parsing and writing (pipeline.py). A file that cannot be
ingested from a batch is reported in ``skipped`` with its error code and reason, never dropped silently.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbot.errors import BadRequest, PayloadTooLarge
from chatbot.ingest.loaders import SUPPORTED_SUFFIXES
from chatbot.ingest.loaders.registry import split_name
from chatbot.ingest.parsing import Parsed, ParserPool, parse_and_chunk
from chatbot.ingest.pipeline import Pipeline, Plan
from chatbot.ops import tracing
from chatbot.providers.base import Embedder, SparseEmbedder
from chatbot.stores.base import AnswerCache, ChunkRecord, VectorStore
from chatbot.stores.ids import document_id, point_id

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


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that was not ingested, and why (code as in the API's errors: unsupported_media_type, ...)."""

    source: str
    code: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "code": self.code, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What a batch of files came to: one result per ingested document, one entry per skipped file."""

    documents: list[IngestResult]
    skipped: list[Skipped]

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": [d.to_dict() for d in self.documents],
            "skipped": [s.to_dict() for s in self.skipped],
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
        parser: ParserPool | None = None,
        inline_text_bytes: int = 256 * 1024,
    ) -> None:
        self.cache = cache  # invalidated whenever a tenant's documents change
        self.embedder = embedder
        self.sparse = sparse
        self.store = store
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.parser = parser or ParserPool()
        # Text formats this small parse in a thread: their loaders are linear in the size, and a process
        # costs ~30 ms (the eval harness ingests thousands of small markdown files).
        self.inline_text_bytes = inline_text_bytes

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
        with tracing.span("chatbot.ingest", {"chatbot.stage": "ingest", "chatbot.bytes": len(data)}) as span:
            result = await self._ingest_bytes(tenant, source, data, on_chunks, metadata)
            if span is not None:
                span.set_attributes({"chatbot.chunks": result.chunks, "chatbot.unchanged": result.unchanged})
            return result

    async def _ingest_bytes(
        self,
        tenant: str,
        source: str,
        data: bytes,
        on_chunks: Callable[[int], None] | None,
        metadata: Mapping[str, Any] | None,
    ) -> IngestResult:
        plan = await self.plan(tenant, source, data, metadata)
        results: list[IngestResult] = []

        async def one() -> AsyncGenerator[Plan, None]:
            yield plan

        await self._pipeline(results, on_chunks).run(one())
        return results[0]

    async def plan(
        self, tenant: str, source: str, data: bytes, metadata: Mapping[str, Any] | None = None
    ) -> Plan:
        """Parse and chunk one document and diff its chunks against the store: what ingesting it must do."""
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"{source} is larger than {self.max_bytes} bytes.")
        doc = await self._parse(tenant, source, data)
        chunks = doc.chunks
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
                page_start=c.page_start,
                page_end=c.page_end,
                char_start=c.char_start,
                char_end=c.char_end,
                metadata=meta,
            )
            for c in chunks
        ]
        embed_texts = {pid: c.embed_text for pid, c in zip(ids, chunks, strict=True)}
        stored = await self.store.versions_of(ids)
        missing = [r for r in records if r.point_id not in stored]
        relabel = [i for i, v in stored.items() if v != version]
        texts = [embed_texts[r.point_id] for r in missing]
        return Plan(tenant, source, doc_id, doc.title, version, records, missing, texts, relabel, meta)

    def _pipeline(self, results: list[IngestResult], on_chunks: Callable[[int], None] | None) -> Pipeline:
        """Embed and write plans (overlapping: pipeline.py); each finished document's result into `results`."""

        async def finish(plan: Plan) -> None:
            """After every missing chunk is upserted: relabel kept chunks, delete older versions."""
            unchanged = not plan.missing and not plan.relabel
            if not unchanged:
                await self.store.set_version(plan.relabel, plan.version, metadata=plan.metadata)
            await self.store.delete_stale(plan.tenant, plan.doc_id, plan.version)
            if not unchanged and self.cache is not None:
                await self.cache.invalidate(plan.tenant)
            if on_chunks:
                on_chunks(len(plan.records) - len(plan.missing))
            results.append(
                IngestResult(
                    plan.doc_id, plan.source, plan.title, len(plan.records), len(plan.missing), unchanged
                )
            )

        return Pipeline(
            embedder=self.embedder,
            sparse=self.sparse,
            store=self.store,
            batch_size=self.batch_size,
            finish=finish,
            on_chunks=on_chunks,
        )

    async def _parse(self, tenant: str, source: str, data: bytes) -> Parsed:
        """Small text files in a thread; everything else in a budgeted worker process."""
        if (
            len(data) <= self.inline_text_bytes
            and split_name(source)[1] in _INLINE_SUFFIXES
            and not _binary(data)
        ):
            limits = self.parser.limits
            return await asyncio.to_thread(parse_and_chunk, source, data, limits, self.max_bytes)
        return await self.parser.parse(tenant, source, data, self.max_bytes)

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
    ) -> IngestReport:
        """Every file given and below each directory; a file that fails is reported in ``skipped``. Files are
        parsed ahead while earlier ones are embedded and written, their chunks sharing embedding batches."""
        report = IngestReport([], [])

        async def plans() -> AsyncGenerator[Plan, None]:
            for path in expand_paths(paths):
                source = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
                try:
                    size = path.stat().st_size
                    if size > self.max_bytes:
                        raise PayloadTooLarge(
                            f"The file is {size:,} bytes; the limit is {self.max_bytes:,} bytes."
                        )
                    data = await asyncio.to_thread(path.read_bytes)
                    plan = await self.plan(tenant, source, data, metadata)
                except BadRequest as exc:  # the file's own fault: report it and go on with the others
                    report.skipped.append(Skipped(source, exc.code, exc.message))
                    continue
                except OSError as exc:
                    report.skipped.append(
                        Skipped(source, "unreadable_file", f"The file could not be read: {exc.strerror}.")
                    )
                    continue
                yield plan

        with tracing.span("chatbot.ingest", {"chatbot.stage": "ingest"}):
            await self._pipeline(report.documents, on_chunks).run(plans())
        return report


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and every file below each directory (hidden ones excepted), in a stable order.

    Files of any name are kept: content detection may recognise them, and those it cannot are reported as
    skipped with their reason rather than left out without a word.
    """
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
        else:
            out.append(p)
    return out


_INLINE_SUFFIXES = frozenset(
    s for s in SUPPORTED_SUFFIXES if s not in {".pdf", ".docx", ".pptx", ".xlsx", ".epub"}
)


def _binary(data: bytes) -> bool:
    """Content a text loader would not read (a PDF or ZIP named .txt goes to a worker)."""
    return data.startswith((b"%PDF", b"PK\x03\x04"))
