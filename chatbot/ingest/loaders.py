"""Turn an uploaded file into a titled document of heading-aware sections.

Pure and synchronous: the ingest service calls ``load_document`` in a worker thread. Nothing here keeps
mutable state between calls, so concurrent calls are safe. Every failure a client can cause surfaces as
one of three ``chatbot.errors`` classes: PayloadTooLarge, UnsupportedMediaType or UnreadableDocument.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from bs4 import BeautifulSoup
from bs4.element import CData, NavigableString, PreformattedString, Tag
from pypdf import PasswordType, PdfReader

from chatbot.errors import ChatbotError, PayloadTooLarge, UnreadableDocument, UnsupportedMediaType

SUPPORTED_SUFFIXES: Final = frozenset({".md", ".markdown", ".txt", ".html", ".htm", ".pdf"})
MAX_BYTES: Final = 20 * 1024 * 1024
MAX_PDF_PAGES: Final = 2000
MAX_PDF_CHARS: Final = 5_000_000
# Beautiful Soup spends tens of microseconds per element; past this many tags a page is tag soup, not a doc.
MAX_HTML_TAGS: Final = 500_000
# Headings travel in every chunk's embed text and payload; a runaway "heading" must not multiply.
MAX_HEADING_CHARS: Final = 200

_MEDIA_TYPES: Final = MappingProxyType(
    {
        ".md": "text/markdown",
        ".markdown": "text/markdown",
        ".txt": "text/plain",
        ".html": "text/html",
        ".htm": "text/html",
        ".pdf": "application/pdf",
    }
)
# Content that is plainly not text, whatever the file is called.
_MAGIC: Final = (
    (b"%PDF-", "a PDF"),
    (b"PK\x03\x04", "a ZIP archive (or a Word, Excel or OpenDocument file)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office document"),
)


def _cp1252_c1() -> dict[int, str]:
    """Code points 0x80-0x9F as cp1252 reads them (curly quotes, dashes, euro sign); 5 bytes are undefined."""
    table: dict[int, str] = {}
    for byte in range(0x80, 0xA0):
        try:
            table[byte] = bytes([byte]).decode("cp1252")
        except UnicodeDecodeError:
            continue
    return table


_CP1252_C1: Final = MappingProxyType(_cp1252_c1())
_BINARY_CONTROLS: Final = MappingProxyType(
    dict.fromkeys([*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)])
)
# Line-ish separators become "\n"; other control characters and stray BOMs are dropped.
_CLEAN: Final = MappingProxyType(
    {
        **dict.fromkeys([*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0), 0xFEFF]),
        **{ord(c): "\n" for c in "\r\v\f\x85\u2028\u2029"},
    }
)

_ATX: Final = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_SETEXT: Final = re.compile(r" {0,3}(=+|-+)[ \t]*")
_NOT_PARAGRAPH: Final = re.compile(r" {0,3}(?:[-*+>|]|\d{1,9}[.)]|<)|    ")
_FENCE_OPEN: Final = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FRONT_MATTER: Final = re.compile(r"---[ \t]*\n(.*?\n)??(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_META_CHARSET: Final = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.I
)
_XML_DECLARATION: Final = re.compile(r"<\?(?=xml)", re.I)
_WHITESPACE: Final = re.compile(r"\s+")
_SPACES: Final = re.compile(r"[ \t]{2,}")
_BLANK_RUNS: Final = re.compile(r"\n{3,}")
_BACKTICK_LINE: Final = re.compile(r"^[ \t]*(`{3,})", re.M)


@dataclass(frozen=True, slots=True)
class Section:
    """A run of body text under one chain of headings."""

    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A loaded file: where it came from, its title, its media type and its non-empty sections."""

    source: str
    title: str
    media_type: str
    sections: tuple[Section, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(section.text for section in self.sections)


@dataclass(frozen=True, slots=True)
class _Block:
    """A heading (level 1-6, or 0 for text before the first heading) and the body text under it."""

    level: int
    heading: str
    body: str


def load_document(
    name: str,
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pdf_pages: int = MAX_PDF_PAGES,
    max_pdf_chars: int = MAX_PDF_CHARS,
) -> ParsedDocument:
    """Parse ``data`` as the file type that ``name``'s suffix (any case) names, checking the content agrees.

    Raises PayloadTooLarge past ``max_bytes`` (and, for PDFs, past ``max_pdf_pages`` pages or
    ``max_pdf_chars`` extracted characters: compressed streams make bytes a poor bound), UnsupportedMediaType
    for an unknown suffix or binary content in a text format, and UnreadableDocument for a damaged, encrypted
    or empty document. Text formats are decoded as described in ``decode_text``.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The file is {len(data):,} bytes; the limit is {max_bytes:,} bytes.",
            details={"limit_bytes": max_bytes},
        )
    stem, suffix = _split_name(name)
    if suffix not in SUPPORTED_SUFFIXES:
        supported = sorted(SUPPORTED_SUFFIXES)
        raise UnsupportedMediaType(
            f"Files of type {suffix or '(no extension)'} are not supported; "
            f"use one of {', '.join(supported)}.",
            details={"supported": supported},
        )
    media_type = _MEDIA_TYPES[suffix]
    stem = _label(stem)[0] or "Untitled"
    if suffix == ".pdf":
        title, sections = _load_pdf(data, stem, max_pages=max_pdf_pages, max_chars=max_pdf_chars)
    else:
        _reject_binary(data, suffix)
        text = decode_text(data, html=media_type == "text/html")
        if media_type == "text/markdown":
            title, sections = _load_markdown(text, stem)
        elif media_type == "text/html":
            title, sections = _load_html(text, stem)
        else:
            title = stem
            body = _tidy(text)
            sections = (Section((title,), body),) if body else ()
    if not sections:
        hint = " A scanned PDF needs OCR before it can be ingested." if suffix == ".pdf" else ""
        raise UnreadableDocument("No readable text was found in the document." + hint)
    return ParsedDocument(source=name, title=title, media_type=media_type, sections=sections)


def decode_text(data: bytes, *, html: bool = False) -> str:
    """Decode uploaded text without ever failing, and normalise newlines to "\\n".

    A UTF-8/UTF-16/UTF-32 byte order mark decides the codec (and is removed). Otherwise strict UTF-8 is
    tried first. If that fails, an HTML file's ``<meta charset>`` is honoured when it names a real text
    codec. Failing that, the bytes are read as UTF-8 with U+FFFD for bad bytes when they hold at least as
    many valid multi-byte characters as bad bytes (a UTF-8 file with a stray byte), and as Windows-1252
    otherwise (the usual legacy encoding; its 5 undefined bytes fall back to Latin-1). Control characters
    other than tab and newline are dropped; form feeds and Unicode line separators become newlines.
    """
    text = _decode(data, html=html)
    sample = text[:65536]
    controls = len(sample) - len(sample.translate(_BINARY_CONTROLS))
    if controls > 2 and controls * 10 > len(sample):
        raise UnsupportedMediaType("The file does not look like text: it is full of control characters.")
    return text.replace("\r\n", "\n").translate(_CLEAN)


def _decode(data: bytes, *, html: bool) -> str:
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if html and (declared := _declared_charset(data)) is not None:
        return declared
    lenient = data.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    multibyte = len(lenient) - len(lenient.encode("ascii", errors="ignore")) - bad
    if multibyte >= bad:
        return lenient
    return data.decode("latin-1").translate(_CP1252_C1)


def _declared_charset(data: bytes) -> str | None:
    """``data`` decoded with the charset its <meta> declares, or None if there is none we can use."""
    match = _META_CHARSET.search(data, 0, 4096)
    if match is None:
        return None
    try:
        info = codecs.lookup(match.group(1).decode("ascii"))
        # Browsers ignore a UTF-16/32 declaration in a document that was readable as ASCII up to it.
        if info.name.startswith(("utf-16", "utf-32")) or not info._is_text_encoding:
            return None
        return data.decode(info.name, errors="replace")
    except (LookupError, ValueError):
        return None


def _reject_binary(data: bytes, suffix: str) -> None:
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            raise UnsupportedMediaType(f"The file is named {suffix} but its content is {kind}.")
    head = data[:65536]
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnsupportedMediaType(f"The file is named {suffix} but it contains binary data (NUL bytes).")


def _split_name(name: str) -> tuple[str, str]:
    """(stem, lower-case suffix) of the last path component; a leading dot does not start a suffix."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        return base.strip(), ""
    return stem.strip(), "." + ext.lower()


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _label(text: str) -> tuple[str, bool]:
    """A heading as it goes into a heading path, and whether it had to be shortened."""
    text = _collapse(text)
    if len(text) <= MAX_HEADING_CHARS:
        return text, False
    cut = text[: MAX_HEADING_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "\u2026", True


def _tidy(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no blank lines at either end."""
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _assemble(blocks: Iterable[_Block], title: str) -> tuple[Section, ...]:
    """Sections with heading paths from heading levels; a document without an H1 is rooted at its title."""
    blocks = list(blocks)
    stack: list[tuple[int, str]] = [] if any(b.level == 1 for b in blocks) else [(0, title)]
    sections: list[Section] = []
    for block in blocks:
        body = block.body
        if block.level:
            while stack and stack[-1][0] >= block.level:
                stack.pop()
            label, shortened = _label(block.heading)
            stack.append((block.level, label))
            if shortened:  # keep the words of an over-long heading as body text
                body = _collapse(block.heading) + "\n\n" + body
        body = body.strip("\n")
        if body.strip():
            path = tuple(text for _, text in stack if text) or (title,)
            sections.append(Section(path, body))
    return tuple(sections)


# ---------------------------------------------------------------------------------------------- markdown


def match_fence_open(line: str) -> str | None:
    """The fence (``` or ~~~, 3 or more) that ``line`` opens, or None. Shared with the chunker."""
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    fence, info = match.groups()
    if fence[0] == "`" and "`" in info:
        return None
    return fence


def is_fence_close(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened by ``fence``: same character, no shorter, nothing after."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3:
        return False
    rest = stripped.lstrip(fence[0])
    return len(stripped) - len(rest) >= len(fence) and not rest.strip()


def _load_markdown(text: str, stem: str) -> tuple[str, tuple[Section, ...]]:
    text, front_title = _strip_front_matter(text)
    blocks = _markdown_blocks(text)
    h1 = next((b.heading for b in blocks if b.level == 1 and _collapse(b.heading)), None)
    title = _label(h1 or front_title or stem)[0] or "Untitled"
    return title, _assemble(blocks, title)


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


def _markdown_blocks(text: str) -> list[_Block]:
    """Split on ATX (and single-line setext) headings; lines inside fenced code are never headings."""
    blocks: list[_Block] = []
    level, heading, lines = 0, "", []
    fence: str | None = None
    paragraph_lines = 0  # lines in the current paragraph, for setext underlines
    for line in text.split("\n"):
        if fence is not None:
            if is_fence_close(line, fence):
                fence = None
            lines.append(line)
            continue
        if (opener := match_fence_open(line)) is not None:
            fence, paragraph_lines = opener, 0
            lines.append(line)
            continue
        atx = _ATX.match(line)
        setext = _SETEXT.fullmatch(line) if paragraph_lines == 1 and lines else None
        if atx is None and setext is None:
            if not line.strip():
                paragraph_lines = 0
            elif paragraph_lines or not _NOT_PARAGRAPH.match(line):
                paragraph_lines += 1
            lines.append(line)
            continue
        if atx is not None:
            next_level, next_heading = len(atx.group(1)), _atx_text(line[atx.end() :])
        else:  # the underlined line is the heading
            next_level, next_heading = (1 if line.lstrip()[0] == "=" else 2), lines.pop()
        blocks.append(_Block(level, heading, _tidy("\n".join(lines))))
        level, heading, lines, paragraph_lines = next_level, next_heading, [], 0
    blocks.append(_Block(level, heading, _tidy("\n".join(lines))))
    return blocks


def _atx_text(rest: str) -> str:
    """An ATX heading's text without its optional closing sequence of #s."""
    rest = rest.strip()
    unclosed = rest.rstrip("#")
    if unclosed != rest and (not unclosed or unclosed[-1] in " \t"):
        return unclosed.rstrip()
    return rest


# -------------------------------------------------------------------------------------------------- html

_DROP_TAGS: Final = frozenset(
    {"script", "style", "nav", "footer", "noscript", "template", "title", "svg", "iframe", "object", "canvas"}
)
_HEADINGS: Final = MappingProxyType({f"h{n}": n for n in range(1, 7)})
_PARAGRAPH_TAGS: Final = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "aside", "blockquote", "figure", "figcaption",
        "address", "details", "summary", "fieldset", "form", "hr", "dl", "center", "body", "html",
        "ul", "ol", "table", "caption",
    }
)  # fmt: skip
_LINE_TAGS: Final = frozenset({"li", "tr", "dt", "dd", "br"})


class _TextBuilder:
    """Collects inline text into lines and paragraphs; one per section, never shared."""

    def __init__(self) -> None:
        self._paragraphs: list[str] = []
        self._lines: list[str] = []
        self._inline: list[str] = []
        self._prefix = ""

    def text(self, value: str) -> None:
        self._inline.append(value)

    def prefix(self, value: str) -> None:
        """Start a line that begins with ``value`` (a list bullet), kept even if the line starts later."""
        self.line()
        self._prefix = value

    def line(self) -> None:
        body = _SPACES.sub(" ", "".join(self._inline)).strip()
        self._inline.clear()
        if body:
            self._lines.append(self._prefix + body)
            self._prefix = ""

    def paragraph(self) -> None:
        self.line()
        if self._lines:
            self._paragraphs.append("\n".join(self._lines))
            self._lines.clear()

    def raw(self, value: str) -> None:
        self.paragraph()
        self._paragraphs.append(value)

    def result(self) -> str:
        self.paragraph()
        return "\n\n".join(self._paragraphs)


def _load_html(text: str, stem: str) -> tuple[str, tuple[Section, ...]]:
    if "<" not in text:  # no markup at all: Beautiful Soup would only warn that it looks like a file name
        title = stem or "Untitled"
        body = _tidy(text)
        return title, ((Section((title,), body),) if body else ())
    markup = _defuse_markup(text)
    if markup.count("<") > MAX_HTML_TAGS:
        raise PayloadTooLarge(
            f"The HTML has more than {MAX_HTML_TAGS:,} tags.", details={"limit_tags": MAX_HTML_TAGS}
        )
    # An XML declaration in XHTML is harmless; keep Beautiful Soup from warning that this may be XML.
    soup = _parse_html(_XML_DECLARATION.sub("<? ", markup))
    title_tag = soup.find("title")
    title = _label(title_tag.get_text(" "))[0] if isinstance(title_tag, Tag) else ""
    blocks = _html_blocks(soup)
    h1 = next((b.heading for b in blocks if b.level == 1 and _collapse(b.heading)), None)
    final_title = title or _label(h1 or "")[0] or stem or "Untitled"
    return final_title, _assemble(blocks, final_title)


def _defuse_markup(text: str) -> str:
    """Escape every "<" that does not open a complete construct, so that parsing stays linear.

    Python's html.parser (before 3.11.13 / 3.12.11) rescans to the end of the input for each "<" that
    opens an unterminated tag, so "<a<a<a..." is quadratic: 200 KB took 20 s. After this pass every "<"
    opens a closed comment, or a tag or declaration whose ">" comes before the next "<". A "<" that opened
    nothing renders as "<" either way. The next ">" and "-->" are cached, so the pass itself is linear.
    """
    pieces: list[str] = []
    pos = 0
    next_gt = next_comment_end = -2  # -2: not looked up yet; -1: there is none
    lt = text.find("<")
    while lt >= 0:
        following = text.find("<", lt + 1)
        if text.startswith("<!--", lt):
            if next_comment_end != -1 and next_comment_end < lt + 4:
                next_comment_end = text.find("-->", lt + 4)
            end = next_comment_end + 3 if next_comment_end >= 0 else -1
        else:
            if next_gt != -1 and next_gt <= lt:
                next_gt = text.find(">", lt + 1)
            opens = text[lt + 1 : lt + 2].isalpha() or text[lt + 1 : lt + 2] in ("/", "!", "?")
            closed = next_gt >= 0 and (following < 0 or next_gt < following)
            end = next_gt + 1 if opens and closed else -1
        if end >= 0:
            pieces.append(text[pos:end])
            pos = end
            lt = text.find("<", end)
        else:
            pieces.append(text[pos:lt])
            pieces.append("&lt;")
            pos = lt + 1
            lt = following
    pieces.append(text[pos:])
    return "".join(pieces)


def _parse_html(text: str) -> BeautifulSoup:
    try:
        return BeautifulSoup(text, "html.parser")
    except Exception as exc:  # html.parser rejects some malformed markup; the client sees one error
        raise UnreadableDocument("The HTML could not be parsed.") from exc


def _html_blocks(soup: BeautifulSoup) -> list[_Block]:
    """Walk the tree without recursion (nesting depth is the uploader's choice) into heading blocks."""
    blocks: list[_Block] = []
    level, heading, out = 0, "", _TextBuilder()
    lists: list[list[int]] = []  # per open ul/ol: [ordered (0/1), next number]
    rows: list[int] = []  # per open tr: cells seen
    cells = 0  # open td/th elements
    stack: list[tuple[object, bool]] = [(soup, False)]
    while stack:
        node, leaving = stack.pop()
        if isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString) or isinstance(node, CData):
                out.text(_WHITESPACE.sub(" ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name.lower()
        in_list, in_table = bool(lists), bool(rows)
        if leaving:
            if name in ("ul", "ol"):
                lists.pop()
            elif name == "tr":
                rows.pop()
            elif name in ("td", "th"):
                cells -= 1
            if cells:
                out.text(" ")
            elif name in _PARAGRAPH_TAGS and not (lists or rows):
                out.paragraph()
            elif name in _PARAGRAPH_TAGS or name in _LINE_TAGS:
                out.line()
            continue
        if name in _DROP_TAGS:
            continue
        if name in _HEADINGS:
            blocks.append(_Block(level, heading, out.result()))
            level, heading, out = _HEADINGS[name], node.get_text(" "), _TextBuilder()
            continue
        if name == "pre":
            if cells:
                out.text(_WHITESPACE.sub(" ", node.get_text()))
            else:
                out.raw(_fenced(node.get_text()))
            continue
        if cells:
            out.text(" ")
        elif name in _PARAGRAPH_TAGS and not (in_list or in_table):
            out.paragraph()
        elif name in _PARAGRAPH_TAGS or name in _LINE_TAGS:
            out.line()
        if name in ("ul", "ol"):
            lists.append([int(name == "ol"), 1])
        elif name == "li" and lists and not cells:
            ordered, number = lists[-1]
            out.prefix("  " * (len(lists) - 1) + (f"{number}. " if ordered else "- "))
            lists[-1][1] += 1
        elif name == "tr":
            rows.append(0)
        elif name in ("td", "th"):
            if rows and rows[-1] and cells == 0:
                out.text(" | ")
            if rows:
                rows[-1] += 1
            cells += 1
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    blocks.append(_Block(level, heading, out.result()))
    return blocks


def _fenced(code: str) -> str:
    """``code`` as a fenced block, the fence longer than any backtick fence inside it."""
    code = "\n".join(line.rstrip() for line in code.split("\n")).strip("\n")
    if not code.strip():
        return ""
    longest = max((len(m.group(1)) for m in _BACKTICK_LINE.finditer(code)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}\n{code}\n{fence}"


# --------------------------------------------------------------------------------------------------- pdf


def _load_pdf(data: bytes, stem: str, *, max_pages: int, max_chars: int) -> tuple[str, tuple[Section, ...]]:
    """One section per page with text, headed (title, "Page N"): PDF headings are not reliable."""
    if not data.startswith(b"%PDF"):
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
            text = _tidy(page.extract_text().replace("\r\n", "\n").translate(_CLEAN))
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
    return _label(str(raw).translate(_CLEAN))[0] if raw else ""
