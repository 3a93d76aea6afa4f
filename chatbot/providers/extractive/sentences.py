"""Sentences of a markdown passage: the units the extractive answer scores and quotes."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CODE_LINES = 12  # a fenced block this short may be quoted after the sentence that introduces it

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s+|$)")
_CLOSING_HASHES = re.compile(r"\s+#+\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?")
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_TABLE_ROW = re.compile(r"^\s*\|")
_TABLE_RULE = re.compile(r"^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*(:?-{3,}:?)?\s*$")
_HTML_LINE = re.compile(r"^\s*<[^>]+>\s*$")
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(\s+)")
_OPENERS = "\"'([`*_"
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "cf.", "mr.", "mrs.", "ms.", "dr.", "fig.", "no."})


@dataclass(frozen=True, slots=True)
class Span:
    """A sentence of a passage, cleaned of markdown block markers, with a short code block it introduces."""

    text: str
    code: str | None = None
    heading: str = ""  # the nearest heading above it, markers stripped


# -- splitting -------------------------------------------------------------------------------------


def split_sentences(text: str) -> list[Span]:
    """Sentences of a markdown passage.

    Headings, rules, tables and HTML lines are boundaries and never sentences (a heading, its markers
    stripped, becomes the `heading` of the sentences below it), except that a table's data row is a
    sentence of its own, each cell named by its column ("Metal: Molybdenum; Supplier: Northern Forge":
    spreadsheets hold their facts in rows); list items and block
    quotes lose their markers; inline code is kept. A fenced block of at most MAX_CODE_LINES lines is
    attached to the sentence just before it; longer blocks and blocks with no sentence before are dropped.
    """
    spans: list[Span] = []
    paragraph: list[str] = []
    fence: str | None = None  # the open fence's characters while inside a fenced block
    code_lines: list[str] = []
    attachable = False  # the last span ends right before this point (no heading or table in between)
    heading = ""
    quoted = False  # the previous line was in a block quote
    columns: list[str] | None = None  # the header row of the table being read

    def flush() -> None:
        nonlocal attachable
        if paragraph:
            spans.extend(Span(s, heading=heading) for s in _sentences(" ".join(paragraph)))
            paragraph.clear()
            attachable = bool(spans)

    def attach_code(closing: str) -> None:
        nonlocal attachable
        body = code_lines[1:]
        if attachable and body and len(body) <= MAX_CODE_LINES and spans[-1].code is None:
            spans[-1] = Span(spans[-1].text, "\n".join([*code_lines, closing]), spans[-1].heading)
        code_lines.clear()
        attachable = False

    for line in text.splitlines():
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                attach_code(stripped)
                fence = None
            else:
                code_lines.append(line)
            continue
        opened = _FENCE.match(line)
        if opened:
            flush()
            fence = opened.group(1)
            code_lines.append(line.strip())
            continue
        if _TABLE_ROW.match(line):
            flush()
            attachable = False
            if not _TABLE_RULE.match(line):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if columns is None:
                    columns = cells
                elif any(cells):
                    spans.append(Span(_row_text(columns, cells), heading=heading))
            continue
        columns = None
        if not line.strip():
            flush()
            continue
        if _SETEXT_UNDERLINE.match(line) and len(paragraph) == 1:
            heading = paragraph.pop()  # "Title\n=====": a heading
            attachable = False
            continue
        marker = _HEADING.match(line)
        if marker:
            flush()
            heading = _CLOSING_HASHES.sub("", line[marker.end() :]).strip()
            attachable = False
            continue
        if _RULE.match(line) or _HTML_LINE.match(line):
            flush()
            attachable = False
            continue
        quote = _QUOTE.match(line)
        if quote:
            line = line[quote.end() :]
        if bool(quote) != quoted:
            flush()  # a block quote starts or ends: a new unit
            quoted = bool(quote)
        item = _LIST_ITEM.match(line)
        if item:
            flush()
            line = line[item.end() :]
        paragraph.append(line.strip())
    if fence is not None:
        attach_code(fence)  # a chunk cut inside a fence: quote what is there, closed
    flush()
    return spans


def _row_text(columns: list[str], cells: list[str]) -> str:
    """A table row as one sentence: "column: value" for each non-empty cell."""
    named = [
        f"{name}: {value}" if name else value for name, value in zip(columns, cells, strict=False) if value
    ]
    named.extend(value for value in cells[len(columns) :] if value)
    return "; ".join(named)


def _sentences(paragraph: str) -> list[str]:
    """Split running text after . ! ? followed by space and a capital, digit or opener; not after e.g."""
    found: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(paragraph):
        after = paragraph[match.end() : match.end() + 2]
        if not after or not (after[0].isupper() or after[0].isdigit() or after[0] in _OPENERS):
            continue
        words = paragraph[start : match.start(1)].split()
        last = words[-1].lower() if words else ""
        if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
            continue
        found.append(paragraph[start : match.start(1)].strip())
        start = match.end()
    found.append(paragraph[start:].strip())
    return [s for s in found if s]
