"""JSON and JSON Lines: one section per record, so one record never shares a chunk with another.

A record's text is its ``Limits.json_text_field`` (default "text") when that is a string, else the record
as indented JSON. Its heading is its "title", "name" or "id" field when it has one.
"""

from __future__ import annotations

import json
from typing import Any, Final

from chatbot.errors import PayloadTooLarge, UnreadableDocument
from chatbot.ingest.loaders.document import Limits, Loaded, Section, label, tidy
from chatbot.ingest.loaders.text import decode_text

MAX_RECORDS: Final = 200_000
_NAME_FIELDS: Final = ("title", "name", "id")


def load_json(data: bytes, stem: str, limits: Limits) -> Loaded:
    """A .json file: a list of records (or one record) as sections."""
    try:
        value = json.loads(decode_text(data))
    except (ValueError, RecursionError) as exc:
        raise UnreadableDocument("The file is not valid JSON.") from exc
    return stem, _sections(value if isinstance(value, list) else [value], stem, limits.json_text_field)


def load_jsonl(data: bytes, stem: str, limits: Limits) -> Loaded:
    """A .jsonl file: one record per non-blank line."""
    records = []
    for number, line in enumerate(decode_text(data).split("\n"), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except (ValueError, RecursionError) as exc:
                raise UnreadableDocument(f"Line {number} is not valid JSON.") from exc
    return stem, _sections(records, stem, limits.json_text_field)


def _sections(records: list[Any], stem: str, field: str) -> tuple[Section, ...]:
    if len(records) > MAX_RECORDS:
        raise PayloadTooLarge(f"More than {MAX_RECORDS:,} records.", code="document_too_large")
    sections = []
    for record in records:
        text = record.get(field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            text = record if isinstance(record, str) else json.dumps(record, indent=1, ensure_ascii=False)
        name = next(
            (
                str(record[k])
                for k in _NAME_FIELDS
                if isinstance(record, dict) and record.get(k) not in (None, "")
            ),
            "",
        )
        body = tidy(text)
        if body.strip():
            sections.append(Section((stem, label(name)[0]) if name else (stem,), body))
    return tuple(sections)
