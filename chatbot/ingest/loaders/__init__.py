"""Turn an uploaded file into a titled document of heading-aware sections.

One module per format family (markdown.py, text.py for plain text and decoding, html.py, pdf.py);
registry.py picks the family from the name's suffix and checks the content agrees. Pure and synchronous:
the ingest service calls ``load_document`` in a worker thread, and nothing here keeps mutable state between
calls, so concurrent calls are safe. Every failure a client can cause surfaces as one of three
``chatbot.errors`` classes: PayloadTooLarge, UnsupportedMediaType or UnreadableDocument.
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
