"""EPUB through ebooklib: the spine's XHTML documents in reading order, each read like an HTML upload.

Headings inside a chapter nest under the book's title.
"""

from __future__ import annotations

import io
import warnings

from chatbot.ingest.loaders.document import Limits, Loaded, Section, label
from chatbot.ingest.loaders.html import load_html
from chatbot.ingest.loaders.zipped import open_zip


def load_epub(data: bytes, stem: str, limits: Limits) -> Loaded:
    """Chapters in spine order under (book title, chapter headings...); the book's title, else the stem."""
    open_zip(data, limits.max_unpacked_bytes)
    import ebooklib
    from ebooklib import epub

    with warnings.catch_warnings():  # ebooklib warns about its own future defaults
        warnings.simplefilter("ignore")
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
    titles = book.get_metadata("DC", "title")
    title = label(titles[0][0] if titles else "")[0] or stem
    sections: list[Section] = []
    for item_id, _linear in book.spine:
        item = book.get_item_with_id(item_id)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or "nav" in item.get_name():
            continue
        _, chapter = load_html(item.get_content(), "", limits)
        for section in chapter:
            path = (
                section.heading_path
                if section.heading_path[:1] == (title,)
                else (title, *section.heading_path)
            )
            sections.append(Section(tuple(p for p in path if p), section.text))
    return title, tuple(sections)
