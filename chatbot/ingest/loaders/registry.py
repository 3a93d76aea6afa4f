"""Which loader reads an upload: its content when that says (PDF magic, the members of a ZIP), else its suffix.

A format family adds itself with one ``Format`` line in FORMATS; everything else (size limit, suffix
lookup, content sniffing, the empty-document check) is shared here. Binary content decides over the name:
a PDF called "notes.txt" is read as a PDF, a .docx that is really a workbook as a workbook.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from chatbot.errors import ChatbotError, PayloadTooLarge, UnreadableDocument, UnsupportedMediaType
from chatbot.ingest.loaders import pdf, zipped
from chatbot.ingest.loaders.document import Limits, Loaded, ParsedDocument, label
from chatbot.ingest.loaders.epub import load_epub
from chatbot.ingest.loaders.html import load_html
from chatbot.ingest.loaders.markdown import load_markdown
from chatbot.ingest.loaders.records import load_json, load_jsonl
from chatbot.ingest.loaders.rst import load_rst
from chatbot.ingest.loaders.sheets import load_csv, load_xlsx
from chatbot.ingest.loaders.slides import load_pptx
from chatbot.ingest.loaders.text import CODE_SUFFIXES, load_text
from chatbot.ingest.loaders.word import load_docx

MAX_BYTES: Final = 20 * 1024 * 1024
MAX_PDF_PAGES: Final = 2000
MAX_PDF_CHARS: Final = 5_000_000


@dataclass(frozen=True, slots=True)
class Format:
    """A format family: its media type, the suffixes that name it, its parser and, if binary, its magic."""

    media_type: str
    suffixes: tuple[str, ...]
    load: Callable[[bytes, str, Limits], Loaded]
    signature: bytes | None = None  # what a binary format's content starts with; None for text formats


_OOXML: Final = "application/vnd.openxmlformats-officedocument"
FORMATS: Final = (
    Format("text/markdown", (".md", ".markdown"), load_markdown),
    Format("text/plain", (".txt", ".text", ".log"), load_text),
    Format("text/x-source", CODE_SUFFIXES, load_text),
    Format("text/html", (".html", ".htm", ".xhtml"), load_html),
    Format("text/x-rst", (".rst",), load_rst),
    Format("text/csv", (".csv", ".tsv"), load_csv),
    Format("application/json", (".json",), load_json),
    Format("application/jsonl", (".jsonl", ".ndjson"), load_jsonl),
    Format("application/pdf", (".pdf",), pdf.load_pdf, signature=pdf.SIGNATURE),
    Format(f"{_OOXML}.wordprocessingml.document", (".docx",), load_docx, signature=zipped.SIGNATURE),
    Format(f"{_OOXML}.presentationml.presentation", (".pptx",), load_pptx, signature=zipped.SIGNATURE),
    Format(f"{_OOXML}.spreadsheetml.sheet", (".xlsx",), load_xlsx, signature=zipped.SIGNATURE),
    Format("application/epub+zip", (".epub",), load_epub, signature=zipped.SIGNATURE),
)
_BY_SUFFIX: Final = MappingProxyType({suffix: fmt for fmt in FORMATS for suffix in fmt.suffixes})
SUPPORTED_SUFFIXES: Final = frozenset(_BY_SUFFIX)

_OLE: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE: Final = "EncryptedPackage".encode("utf-16-le")  # an OLE directory entry's name

# Content that is plainly not text, whatever the file is called.
_MAGIC: Final = (
    (b"%PDF-", "a PDF"),
    (b"PK\x03\x04", "a ZIP archive (or a Word, Excel or OpenDocument file)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (_OLE, "a legacy Microsoft Office document (.doc, .xls, .ppt: save it as .docx, .xlsx, .pptx)"),
)


def load_document(
    name: str,
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pdf_pages: int = MAX_PDF_PAGES,
    max_pdf_chars: int = MAX_PDF_CHARS,
    limits: Limits | None = None,
) -> ParsedDocument:
    """Parse ``data`` as the file type that ``name``'s suffix (any case) names, checking the content agrees.

    Raises PayloadTooLarge past ``max_bytes`` (and, for PDFs, past ``max_pdf_pages`` pages or
    ``max_pdf_chars`` extracted characters), UnsupportedMediaType for an unknown suffix or binary content
    in a text format, and UnreadableDocument for a damaged, encrypted or empty document. Text formats are
    decoded as ``text.decode_text`` describes.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes.",
            details={"limit_bytes": max_bytes},
        )
    stem, suffix = split_name(name)
    fmt = detect(suffix, data)
    limits = limits or Limits(max_pdf_pages, max_pdf_chars)
    try:
        title, sections = fmt.load(data, label(stem)[0] or "Untitled", limits)
    except (ChatbotError, MemoryError):
        raise
    except Exception as exc:
        if fmt.signature is None:  # our own text parsers: a failure there is a bug to see, not hide
            raise
        # The office, e-book and PDF libraries raise many types on damaged files; the client sees one.
        raise UnreadableDocument("The file is damaged or uses features we cannot read.") from exc
    if not sections:
        hint = (
            " The PDF has no text layer and no page image to read with OCR."
            if fmt.media_type == "application/pdf"
            else ""
        )
        raise UnreadableDocument("No readable text was found in the document." + hint)
    return ParsedDocument(source=name, title=title, media_type=fmt.media_type, sections=sections)


def detect(suffix: str, data: bytes) -> Format:
    """The format the content is (PDF, a ZIP-based office file or e-book), else the one ``suffix`` names.

    A text format refuses content that sniffs as binary.
    """
    if data.startswith(pdf.SIGNATURE):
        return _BY_SUFFIX[".pdf"]
    if data.startswith(_OLE) and _ENCRYPTED_PACKAGE in data:
        # A password-protected .docx/.xlsx/.pptx is an OLE container holding the encrypted ZIP.
        raise UnreadableDocument(
            "The document is password-protected; upload an unprotected copy.", code="encrypted_document"
        )
    if data.startswith(_OLE):
        raise UnsupportedMediaType(f"The file is {sniff(data)}.")
    if data.startswith(zipped.SIGNATURE) and (found := zipped.kind(data)) is not None:
        return _BY_SUFFIX[found]
    fmt = _BY_SUFFIX.get(suffix)
    if fmt is None:
        supported = sorted(SUPPORTED_SUFFIXES)
        raise UnsupportedMediaType(
            f"Files of type {suffix or '(no extension)'} are not supported; "
            f"use one of {', '.join(supported)}.",
            details={"supported": supported},
        )
    if fmt.signature is None and (kind := sniff(data)) is not None:
        raise UnsupportedMediaType(f"The file is named {suffix} but its content is {kind}.")
    if fmt.signature is not None and not data.startswith(fmt.signature):
        start = fmt.signature.decode("latin-1")
        raise UnreadableDocument(
            f"The file is named {suffix} but is not one: it does not start with {start}."
        )
    return fmt


def sniff(data: bytes) -> str | None:
    """What binary content is, from its first bytes ("a PNG image", "binary data (NUL bytes)"), else None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:65536]
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "binary data (NUL bytes)"
    return None


def split_name(name: str) -> tuple[str, str]:
    """(stem, lower-case suffix) of the last path component; a leading dot does not start a suffix."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        return base.strip(), ""
    return stem.strip(), "." + ext.lower()
