"""Reading a BEIR-layout data set (corpus.jsonl, queries.jsonl, qrels TSV) and mapping its corpus to product
documents: one markdown document per corpus entry, the title as its H1 (the heading every chunk's embed text
starts with, as the user guide's headings do)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbot.errors import ConfigError

SOURCE_SUFFIX = ".md"


@dataclass(frozen=True, slots=True)
class CorpusDoc:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class BeirData:
    corpus: list[CorpusDoc]
    queries: dict[str, str]  # query id -> text, in file order
    qrels: dict[str, dict[str, int]]  # query id -> corpus id -> graded relevance


def read_corpus(path: Path) -> list[CorpusDoc]:
    """corpus.jsonl: one {"_id", "title", "text"} object a line."""
    return [
        CorpusDoc(str(row["_id"]), str(row.get("title") or ""), str(row.get("text") or ""))
        for row in _jsonl(path)
    ]


def read_queries(path: Path) -> dict[str, str]:
    """queries.jsonl: one {"_id", "text"} object a line."""
    return {str(row["_id"]): str(row["text"]) for row in _jsonl(path)}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """qrels TSV with a header line: query-id, corpus-id, score."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, None)
        if header is None or [h.strip().lower() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise ConfigError(f"{path}: expected a header line 'query-id<TAB>corpus-id<TAB>score'.")
        for row in rows:
            if len(row) >= 3:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def read_beir(corpus: Path, queries: Path, qrels: Path) -> BeirData:
    for path in (corpus, queries, qrels):
        if not path.is_file():
            raise ConfigError(f"No such file: {path}")
    return BeirData(read_corpus(corpus), read_queries(queries), read_qrels(qrels))


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{number}: not a JSON object.") from exc


def document_source(doc_id: str) -> str:
    """The document name a corpus entry is ingested under; `corpus_id` maps a search hit back."""
    return doc_id + SOURCE_SUFFIX


def corpus_id(source: str) -> str:
    return source.removesuffix(SOURCE_SUFFIX)


def document_bytes(doc: CorpusDoc) -> bytes:
    """A markdown document: the title as its H1 (the heading every chunk's embed text starts with)."""
    title = " ".join(doc.title.split())
    text = doc.text.strip()
    return (f"# {title}\n\n{text}\n" if title else f"{text}\n").encode()
