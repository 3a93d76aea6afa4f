"""What every loader produces (a titled document of heading-aware sections) and the helpers they share."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

# Headings travel in every chunk's embed text and payload; a runaway "heading" must not multiply.
MAX_HEADING_CHARS: Final = 200

# Line-ish separators become "\n"; other control characters and stray BOMs are dropped.
CLEAN: Final = MappingProxyType(
    {
        **dict.fromkeys([*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0), 0xFEFF]),
        **{ord(c): "\n" for c in "\r\v\f\x85\u2028\u2029"},
    }
)
_BLANK_RUNS: Final = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class Section:
    """A run of body text under one chain of headings, and the page (or slide) it is on, if paged."""

    heading_path: tuple[str, ...]
    text: str
    page: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A loaded file: where it came from, its title, its media type and its non-empty sections."""

    source: str
    title: str
    media_type: str
    sections: tuple[Section, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(section.text for section in self.sections)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one document beyond its size in bytes (compressed formats make bytes a poor bound)."""

    max_pdf_pages: int
    max_pdf_chars: int
    max_unpacked_bytes: int = 200 * 1024 * 1024  # what a ZIP-based file (docx, xlsx, epub) may inflate to
    json_text_field: str = "text"  # the field of a JSON record that holds its text
    ocr: bool = True  # read pages without a text layer with OCR


@dataclass(frozen=True, slots=True)
class Block:
    """A heading (level 1-6, or 0 for text before the first heading) and the body text under it."""

    level: int
    heading: str
    body: str


Loaded = tuple[str, tuple[Section, ...]]  # (title, sections), what each format's parser returns


def collapse(text: str) -> str:
    """Runs of whitespace as single spaces, none at either end."""
    return " ".join(text.split())


def label(text: str) -> tuple[str, bool]:
    """A heading as it goes into a heading path, and whether it had to be shortened."""
    text = collapse(text)
    if len(text) <= MAX_HEADING_CHARS:
        return text, False
    cut = text[: MAX_HEADING_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "\u2026", True


def tidy(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no blank lines at either end."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def first_h1(blocks: Iterable[Block]) -> str | None:
    """The text of the first non-blank level-1 heading, if any."""
    return next((b.heading for b in blocks if b.level == 1 and collapse(b.heading)), None)


def single_section(text: str, title: str) -> Loaded:
    """``text`` tidied as the one section of a document with no structure of its own."""
    body = tidy(text)
    return title, ((Section((title,), body),) if body else ())


def assemble(blocks: Iterable[Block], title: str) -> tuple[Section, ...]:
    """Sections with heading paths from heading levels; a document without an H1 is rooted at its title."""
    blocks = list(blocks)
    stack: list[tuple[int, str]] = [] if any(b.level == 1 for b in blocks) else [(0, title)]
    sections: list[Section] = []
    for block in blocks:
        body = block.body
        if block.level:
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            text, shortened = label(block.heading)
            stack.append((block.level, text))
            if shortened:  # keep the words of an over-long heading as body text
                body = collapse(block.heading) + "\n\n" + body
        body = body.strip("\n")
        if body.strip():
            path = tuple(text for _, text in stack if text) or (title,)
            sections.append(Section(path, body))
    return tuple(sections)


def table_sections(
    heading_path: tuple[str, ...], rows: list[list[str]], *, budget: int = 900, page: int | None = None
) -> list[Section]:
    """A table as Markdown tables of whole rows, each under ``budget`` characters, each with the header row.

    The first row is the header; repeating it in every piece keeps each chunk readable on its own.
    """
    rows = [[_cell(value) for value in row] for row in rows if any(str(v).strip() for v in row)]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]
    head = lines[0] + "\n|" + "---|" * width
    sections: list[Section] = []
    piece: list[str] = []
    size = len(head)
    for line in lines[1:] or [""]:
        if piece and size + len(line) + 1 > budget:
            sections.append(Section(heading_path, "\n".join([head, *piece]), page))
            piece, size = [], len(head)
        if line:
            piece.append(line)
            size += len(line) + 1
    sections.append(Section(heading_path, "\n".join([head, *piece]), page))
    return sections


def _cell(value: object) -> str:
    return collapse("" if value is None else str(value)).replace("|", "\\|")
