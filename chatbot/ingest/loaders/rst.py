"""reStructuredText: sections at its titles, found as docutils finds them, without running docutils.

A title is a line of text underlined (and optionally overlined) by a line of one repeated punctuation
character at least as long as the text. As in docutils, levels follow the order in which each adornment
style first appears. The body stays as written (directives and markup are text the reader understands).
"""

from __future__ import annotations

import re
from typing import Final

from chatbot.ingest.loaders.document import Block, Limits, Loaded, assemble, first_h1, label, tidy
from chatbot.ingest.loaders.text import decode_text

_ADORNMENT: Final = re.compile(r"([!-/:-@\[-`{-~])\1{2,}\s*")


def load_rst(data: bytes, stem: str, limits: Limits) -> Loaded:
    """Sections under the document's titles; the first title is the document's."""
    del limits
    lines = decode_text(data).split("\n")
    styles: list[tuple[str, bool]] = []
    blocks: list[Block] = []
    level, heading, body_from, i = 0, "", 0, 0
    while i < len(lines) - 1:
        text, under = lines[i], lines[i + 1]
        over = i > 0 and _is_adornment(lines[i - 1], text)
        if text.strip() and not _is_adornment(text, "") and _is_adornment(under, text):
            style = (under.strip()[0], over)
            if style not in styles:
                styles.append(style)
            end = i - 1 if over else i
            blocks.append(Block(level, heading, tidy("\n".join(lines[body_from:end]))))
            level, heading, body_from = min(styles.index(style) + 1, 6), text.strip(), i + 2
            i += 2
            continue
        i += 1
    blocks.append(Block(level, heading, tidy("\n".join(lines[body_from:]))))
    title = label(first_h1(blocks) or stem)[0] or "Untitled"
    return title, assemble(blocks, title)


def _is_adornment(line: str, text: str) -> bool:
    return _ADORNMENT.fullmatch(line) is not None and len(line.rstrip()) >= len(text.rstrip())
