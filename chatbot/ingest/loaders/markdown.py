"""Markdown: sections cut at top-level headings, as markdown-it-py's CommonMark block parser finds them.

Only the block rules run (no inline parsing), and the parser is used for where things are, never for
rendering: a section's text is the source lines between two headings, so code blocks, tables, lists and
links reach the chunker exactly as written. Headings inside block quotes and list items stay body text.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from markdown_it import MarkdownIt
from markdown_it.token import Token

from chatbot.ingest.loaders.document import Block, Limits, Loaded, assemble, first_h1, label, tidy
from chatbot.ingest.loaders.text import decode_text

Span = tuple[int, int]

_FRONT_MATTER: Final = re.compile(r"---[ \t]*\n(.*?\n)??(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_NEWLINE: Final = re.compile(r"\n")


@functools.cache
def _parser() -> MarkdownIt:
    """CommonMark block parsing only. Primed once, so threads share a parser whose rule caches are built."""
    parser = MarkdownIt("commonmark").disable(["inline", "text_join"])
    parser.parse("")
    return parser


def _tokens(text: str) -> list[Token]:
    # markdown-it turns a lone "\r" into a line break; a same-length stand-in keeps its line numbers ours.
    return _parser().parse(text.replace("\r", " "))


def load_markdown(data: bytes, stem: str, limits: Limits) -> Loaded:
    """A .md file: front matter off, then one block per top-level heading; the first H1 is the title."""
    del limits
    text, front_title = _strip_front_matter(decode_text(data))
    blocks = markdown_blocks(text)
    title = label(first_h1(blocks) or front_title or stem)[0] or "Untitled"
    return title, assemble(blocks, title)


def _strip_front_matter(text: str) -> tuple[str, str | None]:
    """Text without a leading ``---`` YAML block, and the block's ``title:`` if it has one."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return text, None
    title = None
    for line in (match.group(1) or "").split("\n"):
        if line.startswith("title:"):
            title = line[len("title:") :].strip().strip("\"'").strip() or None
            break
    return text[match.end() :], title


def markdown_blocks(text: str) -> list[Block]:
    """The text before the first heading (level 0), then each top-level heading with the lines under it."""
    lines = text.split("\n")
    blocks: list[Block] = []
    level, heading, body_from = 0, "", 0
    tokens = _tokens(text)
    for i, token in enumerate(tokens):
        if token.type != "heading_open" or token.level != 0 or token.map is None:
            continue
        start, end = token.map
        blocks.append(Block(level, heading, tidy("\n".join(lines[body_from:start]))))
        level, heading, body_from = int(token.tag[1]), tokens[i + 1].content, end
    blocks.append(Block(level, heading, tidy("\n".join(lines[body_from:]))))
    return blocks


def code_fence_spans(text: str) -> list[Span]:
    """Character spans of the fenced code blocks in ``text`` (at any depth), from opening to closing line."""
    if "```" not in text and "~~~" not in text:  # no fence without one: skips the parse for most sections
        return []
    fences = [t.map for t in _tokens(text) if t.type == "fence" and t.map is not None]
    if not fences:
        return []
    line_starts = [0, *(m.end() for m in _NEWLINE.finditer(text))]
    spans = []
    for first, after in fences:
        end = line_starts[after] - 1 if after < len(line_starts) else len(text)
        spans.append((line_starts[first], end))
    return spans
