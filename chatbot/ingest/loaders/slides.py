"""PowerPoint (.pptx) through python-pptx: one section per slide, the slide number as its page.

The heading path is (deck title, slide title); the body is every other text frame and table on the slide,
then the speaker notes.
"""

from __future__ import annotations

import io

from chatbot.ingest.loaders.document import Limits, Loaded, Section, label, table_sections, tidy
from chatbot.ingest.loaders.zipped import open_zip


def load_pptx(data: bytes, stem: str, limits: Limits) -> Loaded:
    """One section per slide with text, page = slide number; the core title, else the stem."""
    open_zip(data, limits.max_unpacked_bytes)
    from pptx import Presentation

    deck = Presentation(io.BytesIO(data))
    title = label(deck.core_properties.title or "")[0] or stem
    sections: list[Section] = []
    for number, slide in enumerate(deck.slides, start=1):
        heading = slide.shapes.title
        slide_title = (
            label(heading.text_frame.text)[0] if heading is not None and heading.has_text_frame else ""
        )
        path = (title, slide_title) if slide_title else (title,)
        texts: list[str] = []
        tables: list[list[list[str]]] = []
        for shape in slide.shapes:
            if heading is not None and shape.shape_id == heading.shape_id:
                continue
            if getattr(shape, "has_table", False):
                tables.append([[cell.text for cell in row.cells] for row in shape.table.rows])
            elif shape.has_text_frame:
                texts.append(shape.text_frame.text)
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            texts.append(slide.notes_slide.notes_text_frame.text)
        body = tidy("\n\n".join(t for t in texts if t.strip()))
        if body:
            sections.append(Section(path, body, number))
        for rows in tables:
            sections.extend(table_sections(path, rows, page=number))
    return title, tuple(sections)
