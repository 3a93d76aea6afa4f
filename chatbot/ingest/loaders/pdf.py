"""PDF: one section per page, with the page number as data, cleaned of what makes answers quote noise.

Text comes from pypdfium2 (PDFium), tables from pdfplumber, and pages without a text layer from tesseract.
Measured on generated PDFs (4 and 40 pages of text, a running header and footer, a TOC, a ruled table;
2-core box shared with other jobs): pypdf 380-1,300 pages/s, pypdfium2 2,500-9,000 pages/s, pdfplumber text
and tables 140-165 pages/s. PDFium is the fastest by far, keeps reading order, and marks soft hyphens
(U+FFFE) so words broken across lines are rejoined exactly; it finds no tables. So PDFium reads every page
and pdfplumber runs only on pages that draw lines or rectangles (where a ruled table can be), and its
table replaces the table's lines in the page text as a Markdown table.

Cleaning: lines that repeat at the top or bottom of most pages (digits ignored: "page 3" = "page 4") are
running headers/footers and go; table-of-contents lines (dot leaders ending in a page number) go; a word
hyphenated at a line end is rejoined. The heading path is the title and the PDF's own outline (bookmarks)
in force on the page, the only heading structure a PDF states reliably. OCR: see ocr.py.
"""

from __future__ import annotations

import io
import itertools
import re
from collections import Counter
from typing import Any, Final

from chatbot.errors import ChatbotError, PayloadTooLarge, UnreadableDocument
from chatbot.ingest.loaders import ocr
from chatbot.ingest.loaders.document import CLEAN, Limits, Loaded, Section, label, table_sections, tidy

SIGNATURE = b"%PDF"
_EDGE_LINES: Final = 2  # lines at the top and at the bottom of a page that may be a running header/footer
_DOT_LEADER: Final = re.compile(r"(?:\.\s?|\u2026\s?){4,}\s*[0-9ivxlc]{1,6}\s*$", re.I)
_HYPHEN_BREAK: Final = re.compile(r"(\w)-\n(?=[a-z])")
_DIGITS: Final = re.compile(r"\d+")
_MAX_BOOKMARKS: Final = 10_000
_MIN_TEXT: Final = 16  # characters a page needs to count as having a text layer


def load_pdf(data: bytes, stem: str, limits: Limits) -> Loaded:
    """One section per page with text, carrying its page number; headed by the title and the PDF's outline."""
    if not data.startswith(SIGNATURE):
        raise UnreadableDocument("The file is named .pdf but is not a PDF: it does not start with %PDF.")
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise UnreadableDocument(
                "The PDF is password-protected; upload an unprotected copy.", code="encrypted_document"
            ) from exc
        raise UnreadableDocument("The PDF is damaged or uses features we cannot read.") from exc
    try:
        return _load(pdf, data, stem, limits)
    except ChatbotError:
        raise
    except Exception as exc:  # PDFium and pdfplumber raise many types on damaged files; the client sees one
        raise UnreadableDocument("The PDF is damaged or uses features we cannot read.") from exc
    finally:
        pdf.close()


def _load(pdf: Any, data: bytes, stem: str, limits: Limits) -> Loaded:
    pages = len(pdf)
    if pages > limits.max_pdf_pages:
        raise PayloadTooLarge(
            f"The PDF has {pages:,} pages; the limit is {limits.max_pdf_pages:,}.",
            code="document_too_large",
            details={"limit_pages": limits.max_pdf_pages},
        )
    title = _pdf_title(pdf) or stem or "Untitled"
    texts: list[str] = []
    tables: dict[int, list[list[list[str]]]] = {}
    total = 0
    for number in range(pages):
        page = pdf[number]
        text = page.get_textpage().get_text_range()
        text = text.replace("\ufffe\r\n", "").replace("\ufffe", "").replace("\r\n", "\n").translate(CLEAN)
        if len(text.strip()) < _MIN_TEXT and limits.ocr and _has_images(page):
            text = ocr.read_image(page.render(scale=300 / 72).to_pil())
        elif _has_paths(page):
            tables[number] = _tables(data, number)
        total += len(text)
        if total > limits.max_pdf_chars:
            raise PayloadTooLarge(
                f"The PDF holds more than {limits.max_pdf_chars:,} characters of text.",
                code="document_too_large",
                details={"limit_chars": limits.max_pdf_chars},
            )
        texts.append(text)
    running = _running_lines(texts)
    outline = _outline(pdf, pages)
    sections: list[Section] = []
    for number, text in enumerate(texts):
        lines = text.split("\n")
        keep = [line for line in lines if not _DOT_LEADER.search(line)]
        body_lines = [
            line
            for i, line in enumerate(keep)
            if not (_is_edge(i, keep) and _DIGITS.sub("#", line.strip()) in running)
        ]
        if any(line.strip() for line in body_lines):  # a page that is all "running" lines is its own text
            keep = body_lines
        page_tables = tables.get(number, [])
        body = _HYPHEN_BREAK.sub(r"\1", tidy(_without_tables("\n".join(keep), page_tables)))
        path = (title, *outline[number])
        if body.strip():
            sections.append(Section(path, body, number + 1))
        for table in page_tables:
            sections.extend(table_sections(path, table, page=number + 1))
    return title, tuple(sections)


def _outline(pdf: Any, pages: int) -> list[tuple[str, ...]]:
    """Per page, the bookmark chain (the PDF's own outline) in force at its top: its heading path."""
    marks: list[tuple[int, int, str]] = []  # (page, level, title) in outline order
    for mark in itertools.islice(pdf.get_toc(max_depth=6), _MAX_BOOKMARKS):
        dest = mark.get_dest()
        index = dest.get_index() if dest is not None else None
        text = label(mark.get_title().translate(CLEAN))[0]
        if index is not None and 0 <= index < pages and text:
            marks.append((index, mark.level, text))
    marks.sort(key=lambda m: m[0])  # stable: the outline's order within a page is kept
    chains: list[tuple[str, ...]] = []
    stack: list[tuple[int, str]] = []
    k = 0
    for number in range(pages):
        while k < len(marks) and marks[k][0] <= number:
            _, level, text = marks[k]
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            k += 1
        chains.append(tuple(text for _, text in stack))
    return chains


def _is_edge(i: int, lines: list[str]) -> bool:
    non_blank = [k for k, line in enumerate(lines) if line.strip()]
    return i in non_blank[:_EDGE_LINES] or i in non_blank[-_EDGE_LINES:]


def _running_lines(texts: list[str]) -> frozenset[str]:
    """Lines (digits as #) at a page's edges on at least half the pages, when there are 3 or more pages."""
    if len(texts) < 3:
        return frozenset()
    seen: Counter[str] = Counter()
    for text in texts:
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        seen.update({_DIGITS.sub("#", line) for line in lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]})
    return frozenset(line for line, n in seen.items() if n * 2 >= len(texts))


def _has_images(page: object) -> bool:
    import pypdfium2.raw as pdfium_c

    return any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2))  # type: ignore[attr-defined]


def _has_paths(page: object) -> bool:
    import pypdfium2.raw as pdfium_c

    paths = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_PATH], max_depth=1)  # type: ignore[attr-defined]
    return sum(1 for _ in zip(range(4), paths, strict=False)) >= 4  # a ruled table draws several lines


def _tables(data: bytes, number: int) -> list[list[list[str]]]:
    import pdfplumber

    with pdfplumber.open(io.BytesIO(data), pages=[number + 1]) as doc:
        found = doc.pages[0].extract_tables()
    return [[[cell or "" for cell in row] for row in table] for table in found if len(table) >= 2]


def _without_tables(text: str, tables: list[list[list[str]]]) -> str:
    """``text`` without the lines that are a table's rows (PDFium reads a row as its cells and spaces)."""
    if not tables:
        return text
    rows = {" ".join(" ".join(row).split()) for table in tables for row in table}
    return "\n".join(line for line in text.split("\n") if " ".join(line.split()) not in rows)


def _pdf_title(pdf: object) -> str:
    try:
        raw = pdf.get_metadata_value("Title")  # type: ignore[attr-defined]
    except Exception:  # a damaged info dictionary must not cost us the text
        return ""
    return label(str(raw).translate(CLEAN))[0] if raw else ""
