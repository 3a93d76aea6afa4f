"""Cut a parsed document into overlapping, heading-aware chunks sized for the embedding model.

all-MiniLM-L6-v2 truncates at 256 word-pieces, about 1000 characters of English, hence the default size.
A chunk is always a contiguous slice of one section's text, so nothing is rewritten, a chunk never spans
two sections, and its length is exactly what ``max_chars`` bounds. Every step is a regex scan or a
bounded window, so the work is linear in the size of the document. Pure and free of shared state.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from chatbot.ingest.loaders import ParsedDocument
from chatbot.ingest.loaders.markdown import code_fence_spans

# Where a sentence starts: after . ! ? or … (and closing quotes or brackets) plus whitespace, unless a
# lower-case letter follows ("e.g. this"); or at a list item's first character.
_SENTENCE_START: Final = re.compile(
    r"[.!?\u2026][\"'\u201d\u2019)\]]{0,3}\s++(?![a-z])|\n[ \t]*+(?=(?:[-*+\u2022]|\d{1,9}[.)])[ \t])"
)
_LINE_START: Final = re.compile(r"\n")
# The last whitespace character before the end of the searched window.
_LAST_SPACE: Final = re.compile(r"\s\S*+\Z")
_NON_SPACE: Final = re.compile(r"\S")
# A run of non-blank lines, from its first to its last non-whitespace character.
_PARAGRAPH: Final = re.compile(r"\S(?:[^\n]*\S)?(?:[^\S\n]*\n[^\S\n]*\S(?:[^\n]*\S)?)*")

Span = tuple[int, int]

MAX_CHARS: Final = 1000  # chunk size; all-MiniLM-L6-v2 reads about 1000 characters of English
OVERLAP_CHARS: Final = 150  # how far the next chunk of a section starts back


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable passage: its position in the document, its text and the headings above it.

    ``char_start``/``char_end`` locate the text in the document's extracted text (``ParsedDocument.text``);
    ``page_start``/``page_end`` are the PDF page or slide it is on (None for unpaged formats).
    """

    index: int
    text: str
    heading_path: tuple[str, ...]
    content_hash: str
    char_start: int = 0
    char_end: int = 0
    page_start: int | None = None
    page_end: int | None = None

    @property
    def embed_text(self) -> str:
        """The text with its heading path in front: the context helps retrieval."""
        if not self.heading_path:
            return self.text
        return " > ".join(self.heading_path) + "\n\n" + self.text


@dataclass(frozen=True, slots=True)
class _Block:
    """A paragraph, or a fenced code block, as a span of the section text."""

    start: int
    end: int
    code: bool


def chunk_document(
    doc: ParsedDocument, *, max_chars: int = MAX_CHARS, overlap_chars: int = OVERLAP_CHARS
) -> list[Chunk]:
    """Chunks of at most ``max_chars`` characters, numbered from 0 across the document.

    Within a section, whole paragraphs are packed greedily; a paragraph that does not fit is cut at sentence
    starts, then line starts, then whitespace, and a word longer than ``max_chars`` is cut hard. Fenced code
    blocks are cut at lines only when they do not fit. The next chunk of the same section starts up to
    ``overlap_chars`` earlier, at a sentence (or paragraph) start, so the overlap is whole sentences.
    ``content_hash`` is the SHA-256 of the heading path and the text, since both reach the embedding and
    the stored payload: a renamed heading must change the point id.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    if not 0 <= overlap_chars < max_chars:
        raise ValueError("overlap_chars must be at least 0 and less than max_chars")
    chunks: list[Chunk] = []
    offset = 0  # where the section starts in doc.text, which joins sections with a blank line
    for section in doc.sections:
        for start, end in _chunk_spans(section.text, max_chars, overlap_chars):
            text = section.text[start:end]
            digest = _content_hash(section.heading_path, text, section.page)
            chunks.append(
                Chunk(
                    len(chunks),
                    text,
                    section.heading_path,
                    digest,
                    offset + start,
                    offset + end,
                    section.page,
                    section.page,
                )
            )
        offset += len(section.text) + 2
    return chunks


def _content_hash(heading_path: tuple[str, ...], text: str, page: int | None = None) -> str:
    material = "\x1f".join(heading_path) + "\x1e" + text
    if page is not None:  # the page is stored with the chunk: a moved passage must get a new point id
        material += f"\x1d{page}"
    return hashlib.sha256(material.encode("utf-8", errors="surrogatepass")).hexdigest()


def _chunk_spans(text: str, max_chars: int, overlap_chars: int) -> Iterator[Span]:
    blocks = _blocks(text)
    spans: list[Span] = []
    for block in blocks:
        if block.end - block.start <= max_chars:
            spans.append((block.start, block.end))
        else:
            spans.extend(_fit(text, block, max_chars))
    block_starts = [block.start for block in blocks]
    previous: Span | None = None
    i = 0
    while i < len(spans):
        start, end = spans[i]
        if previous is not None and overlap_chars:
            lowest = max(previous[1] - overlap_chars, end - max_chars, previous[0] + 1)
            start = _first_sentence_start(text, blocks, block_starts, lowest, previous[1], default=start)
        i += 1
        while i < len(spans) and spans[i][1] - start <= max_chars:
            end = spans[i][1]
            i += 1
        yield start, end
        previous = (start, end)


def _blocks(text: str) -> list[_Block]:
    """Paragraphs (runs of non-blank lines) and fenced code blocks, trimmed of surrounding whitespace.

    Fences are found by the CommonMark parser the markdown loader uses (nested in lists and quotes too);
    an unclosed fence runs to the end of its container.
    """
    blocks: list[_Block] = []
    prose_from = 0
    for fence_start, fence_end in code_fence_spans(text):
        blocks.extend(
            _Block(m.start(), m.end(), code=False) for m in _PARAGRAPH.finditer(text, prose_from, fence_start)
        )
        start, end = _trim(text, fence_start, fence_end)
        if start < end:
            blocks.append(_Block(start, end, code=True))
        prose_from = fence_end
    blocks.extend(_Block(m.start(), m.end(), code=False) for m in _PARAGRAPH.finditer(text, prose_from))
    return blocks


def _trim(text: str, start: int, end: int) -> Span:
    piece = text[start:end]
    stripped = piece.lstrip()
    start += len(piece) - len(stripped)
    return start, start + len(stripped.rstrip())


def _fit(text: str, block: _Block, max_chars: int) -> Iterator[Span]:
    """``block`` as spans of at most ``max_chars``: itself if it fits, else cut at ever finer boundaries."""
    splitters = (_LINE_START,) if block.code else (_SENTENCE_START, _LINE_START)
    yield from _cut(text, block.start, block.end, max_chars, splitters)


def _cut(
    text: str, start: int, end: int, max_chars: int, splitters: Sequence[re.Pattern[str]]
) -> Iterator[Span]:
    if end - start <= max_chars:
        yield start, end
        return
    if not splitters:
        yield from _wrap(text, start, end, max_chars)
        return
    cuts = [m.end() for m in splitters[0].finditer(text, start, end) if start < m.end() < end]
    for a, b in zip([start, *cuts], [*cuts, end], strict=True):
        a, b = _trim(text, a, b)
        if a < b:
            yield from _cut(text, a, b, max_chars, splitters[1:])


def _wrap(text: str, start: int, end: int, max_chars: int) -> Iterator[Span]:
    """Greedy whitespace wrapping; a word longer than ``max_chars`` is cut hard."""
    pos = start
    while end - pos > max_chars:
        space = _LAST_SPACE.search(text, pos + 1, pos + max_chars + 1)
        if space is None:
            yield pos, pos + max_chars
            pos += max_chars
        else:
            yield _trim(text, pos, space.start())
            pos = space.start()
        next_word = _NON_SPACE.search(text, pos, end)  # a search, not a slice: this loop must stay linear
        pos = end if next_word is None else next_word.start()
    if pos < end:
        yield pos, end


def _first_sentence_start(
    text: str, blocks: list[_Block], block_starts: list[int], lowest: int, end: int, *, default: int
) -> int:
    """The earliest sentence or block start in [lowest, end), not inside code; ``default`` if none."""
    if lowest >= end:
        return default
    # Blocks that overlap the window, from the one containing ``lowest``.
    k = max(bisect_right(block_starts, lowest) - 1, 0)
    while k < len(blocks) and blocks[k].start < end:
        block = blocks[k]
        k += 1
        if block.end <= lowest:
            continue
        if block.start >= lowest:
            return block.start
        if block.code:
            continue
        # Begin a few characters early so the terminator and closing quotes before ``lowest`` are seen.
        for match in _SENTENCE_START.finditer(text, max(block.start, lowest - 4), min(block.end, end)):
            if lowest <= match.end() < min(block.end, end):
                return match.end()
    return default
