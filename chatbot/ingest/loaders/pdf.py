"""PDF: the text layer of each page through pypdf, one section per page with text.

PDF headings are not reliable, so each page is headed (title, "Page N"). Pages, extracted characters and
bytes are bounded separately, since compressed streams make bytes a poor bound.
"""

from __future__ import annotations

import io

from pypdf import PasswordType, PdfReader

from chatbot.errors import ChatbotError, PayloadTooLarge, UnreadableDocument
from chatbot.ingest.loaders.document import CLEAN, Limits, Loaded, Section, label, tidy

SIGNATURE = b"%PDF"


def load_pdf(data: bytes, stem: str, limits: Limits) -> Loaded:
    """One section per page with text, headed (title, "Page N"); the metadata title wins over the stem."""
    max_pages, max_chars = limits.max_pdf_pages, limits.max_pdf_chars
    if not data.startswith(SIGNATURE):
        raise UnreadableDocument("The file is named .pdf but is not a PDF: it does not start with %PDF.")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _decrypts_without_password(reader):
            raise UnreadableDocument("The PDF is password-protected; upload an unprotected copy.")
        pages = len(reader.pages)
        if pages > max_pages:
            raise PayloadTooLarge(
                f"The PDF has {pages:,} pages; the limit is {max_pages:,}.",
                details={"limit_pages": max_pages},
            )
        title = _pdf_title(reader) or stem or "Untitled"
        sections: list[Section] = []
        total = 0
        for number, page in enumerate(reader.pages, start=1):
            text = tidy(page.extract_text().replace("\r\n", "\n").translate(CLEAN))
            total += len(text)
            if total > max_chars:
                raise PayloadTooLarge(
                    f"The PDF holds more than {max_chars:,} characters of text.",
                    details={"limit_chars": max_chars},
                )
            if text.strip():
                sections.append(Section((title, f"Page {number}"), text))
    except ChatbotError:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files; the client sees one error
        raise UnreadableDocument("The PDF is damaged or uses features we cannot read.") from exc
    return title, tuple(sections)


def _decrypts_without_password(reader: PdfReader) -> bool:
    """Some PDFs are encrypted only to restrict printing and open with an empty password."""
    try:
        return reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except Exception:  # AES without a crypto library, malformed encryption dictionaries
        return False


def _pdf_title(reader: PdfReader) -> str:
    try:
        metadata = reader.metadata
        raw = metadata.title if metadata is not None else None
    except Exception:  # a damaged info dictionary must not cost us the text
        return ""
    return label(str(raw).translate(CLEAN))[0] if raw else ""
