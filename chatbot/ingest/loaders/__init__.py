"""Turn an uploaded file into a titled document of heading-aware sections.

One module per format family: markdown.py, text.py (plain text, source code, decoding), html.py, rst.py,
records.py (JSON, JSON Lines), sheets.py (xlsx, csv), word.py (docx), slides.py (pptx), epub.py, pdf.py
(with ocr.py); zipped.py checks ZIP-based files first. registry.py picks the family from the content (PDF
magic, ZIP members) or else the name's suffix. Pure and synchronous: parsing.py runs ``load_document`` in a
budgeted worker process (small text files in a thread), and nothing here keeps mutable state between
calls. Every failure a client can cause surfaces as one of three ``chatbot.errors`` classes,
PayloadTooLarge, UnsupportedMediaType or UnreadableDocument, some with a finer code (encrypted_document,
document_too_large).
"""

from chatbot.ingest.loaders.document import MAX_HEADING_CHARS, ParsedDocument, Section
from chatbot.ingest.loaders.html import MAX_HTML_TAGS
from chatbot.ingest.loaders.registry import (
    MAX_BYTES,
    MAX_PDF_CHARS,
    MAX_PDF_PAGES,
    SUPPORTED_SUFFIXES,
    load_document,
)
from chatbot.ingest.loaders.text import decode_text

__all__ = [
    "MAX_BYTES",
    "MAX_HEADING_CHARS",
    "MAX_HTML_TAGS",
    "MAX_PDF_CHARS",
    "MAX_PDF_PAGES",
    "SUPPORTED_SUFFIXES",
    "ParsedDocument",
    "Section",
    "decode_text",
    "load_document",
]
