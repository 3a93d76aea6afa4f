"""Word (.docx) through python-docx: paragraphs and tables in document order, headings from their styles.

"Title" is level 1, "Heading N" is level N + 1, so the heading path follows the document's outline. Tables
become Markdown tables (header row repeated in each piece) under the heading they follow.
"""

from __future__ import annotations

import re
from typing import Final

from chatbot.ingest.loaders.document import Limits, Loaded, Section, collapse, label, table_sections, tidy
from chatbot.ingest.loaders.zipped import open_zip

_HEADING_STYLE: Final = re.compile(r"(?:heading|überschrift|titre)\s*(\d)", re.I)


def load_docx(data: bytes, stem: str, limits: Limits) -> Loaded:
    """Sections under the document's headings; the core title, else the first Title/H1, else the stem."""
    open_zip(data, limits.max_unpacked_bytes)
    import io

    from docx import Document
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = Document(io.BytesIO(data))
    title = label(document.core_properties.title or "")[0]
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    sections: list[Section] = []

    def path() -> tuple[str, ...]:
        return tuple(text for _, text in stack) or (title or stem,)

    def flush() -> None:
        text = tidy("\n\n".join(body))
        if text:
            sections.append(Section(path(), text))
        body.clear()

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            flush()
            rows = [[cell.text for cell in row.cells] for row in item.rows]
            sections.extend(table_sections(path(), rows))
            continue
        if not isinstance(item, Paragraph):
            continue
        level = _level(item.style.name if item.style is not None else "")
        text = item.text
        if level and collapse(text):
            flush()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, label(text)[0]))
            title = title or (label(text)[0] if level == 1 else "")
        elif text.strip():
            body.append(text)
    flush()
    return title or stem, tuple(sections)


def _level(style: str) -> int:
    if style.lower() == "title":
        return 1
    match = _HEADING_STYLE.match(style)
    return min(int(match.group(1)) + 1, 7) if match else 0
