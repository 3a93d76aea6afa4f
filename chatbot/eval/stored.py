"""An ingested evaluation corpus kept on disk, so trying ten retrieval settings costs one ingest.

    python -m chatbot eval ... --store ./data/eval [--collection scifact]

The collection lives in its own folder, `<store>/<collection>/`: the embedded engine's files under `index/`
and `fingerprint.json` next to them. The fingerprint names everything the stored points depend on: the
corpus (a digest of every document exactly as it is ingested), the embedder and its dimensions, the sparse
model and its BM25 parameters, and the chunking parameters. It is written only after an ingest completes,
so an interrupted ingest is redone. Searching-side settings (fusion, prefetch depth, thresholds, splits)
are not part of it: changing them reuses the collection.

When the fingerprint matches, ingestion is skipped; otherwise the folder's index is deleted and the corpus
is ingested again, and `explain` says which part changed. The folder is the harness's own: nothing else
is ever deleted (pointing `--store` at a deployment's store uses a sub-folder of it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbot.errors import ConfigError
from chatbot.eval.beir import CorpusDoc, document_bytes, document_source
from chatbot.ingest.chunking import MAX_CHARS, OVERLAP_CHARS
from chatbot.providers.registry import Providers

FORMAT = 1  # bump when the way a corpus entry becomes a document changes (beir.document_bytes)
FINGERPRINT = "fingerprint.json"
INDEX = "index"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def corpus_digest(corpus: Sequence[CorpusDoc]) -> str:
    """SHA-256 over every entry's source name and document bytes, in order (what ingestion sees)."""
    h = hashlib.sha256()
    for doc in corpus:
        for part in (document_source(doc.doc_id).encode(), document_bytes(doc)):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


def fingerprint(corpus: Sequence[CorpusDoc], providers: Providers) -> dict[str, Any]:
    """Everything the stored points depend on (see the module docstring)."""
    sparse = providers.sparse
    return {
        "format": FORMAT,
        "corpus": corpus_digest(corpus),
        "documents": len(corpus),
        "embedder": providers.embedder.name,
        "dimensions": providers.embedder.dimensions,
        "sparse": None
        if sparse is None
        else {
            "name": sparse.name,
            **{k: getattr(sparse, k) for k in ("k", "b", "avg_len") if hasattr(sparse, k)},
        },
        "chunking": {"max_chars": MAX_CHARS, "overlap_chars": OVERLAP_CHARS},
    }


@dataclass(frozen=True, slots=True)
class StoredCollection:
    """`<root>/<name>/`: the index folder and its fingerprint."""

    root: Path
    name: str

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _NAME_CHARS or self.name.startswith("."):
            raise ConfigError(f"Collection name {self.name!r}: use letters, digits, '-', '_' and '.'.")

    @property
    def folder(self) -> Path:
        return self.root / self.name

    @property
    def index(self) -> Path:
        return self.folder / INDEX

    def recorded(self) -> dict[str, Any] | None:
        """The fingerprint written by the last completed ingest (None: none, or unreadable)."""
        try:
            found = json.loads((self.folder / FINGERPRINT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def explain(self, wanted: dict[str, Any]) -> str | None:
        """None when the stored collection can be reused for `wanted`, else why it is ingested again."""
        recorded = self.recorded()
        if recorded is None:
            return "no completed ingest recorded" if self.index.exists() else "new collection"
        if not self.index.is_dir():
            return "the index folder is missing"
        changed = [k for k in wanted if recorded.get("fingerprint", {}).get(k) != wanted[k]]
        return f"{', '.join(changed)} changed" if changed else None

    def reset(self) -> None:
        """Delete the index and its fingerprint (only this folder's own files)."""
        (self.folder / FINGERPRINT).unlink(missing_ok=True)
        if self.index.exists():
            shutil.rmtree(self.index)
        self.folder.mkdir(parents=True, exist_ok=True)

    def record(self, wanted: dict[str, Any], ingest: dict[str, Any]) -> None:
        """Mark the ingest complete: the fingerprint and the ingest's figures, written atomically."""
        tmp = self.folder / (FINGERPRINT + ".tmp")
        tmp.write_text(json.dumps({"fingerprint": wanted, "ingest": ingest}, indent=2), encoding="utf-8")
        tmp.replace(self.folder / FINGERPRINT)

    def ingest_figures(self) -> dict[str, Any]:
        """The recorded ingest's figures (documents, chunks, seconds, ...)."""
        found = (self.recorded() or {}).get("ingest")
        return found if isinstance(found, dict) else {}
