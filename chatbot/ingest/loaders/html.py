"""HTML: the readable text of a page, sections cut at h1-h6, chrome (nav, footer, scripts) dropped.

Beautiful Soup with the standard library's html.parser builds the tree; the walk below is ours because it
decides what becomes text, lines and paragraphs (lists get bullets, table rows join cells with |, pre
becomes a fenced block) and must not recurse (nesting depth is the uploader's choice).
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

from bs4 import BeautifulSoup
from bs4.element import CData, NavigableString, PreformattedString, Tag

from chatbot.errors import PayloadTooLarge, UnreadableDocument
from chatbot.ingest.loaders.document import Block, Limits, Loaded, assemble, first_h1, label, single_section
from chatbot.ingest.loaders.text import decode_text

# Beautiful Soup spends tens of microseconds per element; past this many tags a page is tag soup, not a doc.
MAX_HTML_TAGS: Final = 500_000

_XML_DECLARATION: Final = re.compile(r"<\?(?=xml)", re.I)
_WHITESPACE: Final = re.compile(r"\s+")
_SPACES: Final = re.compile(r"[ \t]{2,}")
_BACKTICK_LINE: Final = re.compile(r"^[ \t]*(`{3,})", re.M)
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


def load_html(data: bytes, stem: str, limits: Limits) -> Loaded:
    """An .html file: <title> (else the first h1, else the stem) and its heading sections."""
    del limits
    text = decode_text(data, html=True)
    if "<" not in text:  # no markup at all: Beautiful Soup would only warn that it looks like a file name
        return single_section(text, stem or "Untitled")
    markup = _defuse_markup(text)
    if markup.count("<") > MAX_HTML_TAGS:
        raise PayloadTooLarge(
            f"The HTML has more than {MAX_HTML_TAGS:,} tags.", details={"limit_tags": MAX_HTML_TAGS}
        )
    # An XML declaration in XHTML is harmless; keep Beautiful Soup from warning that this may be XML.
    soup = _parse_html(_XML_DECLARATION.sub("<? ", markup))
    title_tag = soup.find("title")
    title = label(title_tag.get_text(" "))[0] if isinstance(title_tag, Tag) else ""
    blocks = _html_blocks(soup)
    final_title = title or label(first_h1(blocks) or "")[0] or stem or "Untitled"
    return final_title, assemble(blocks, final_title)


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


def _html_blocks(soup: BeautifulSoup) -> list[Block]:
    """Walk the tree without recursion (nesting depth is the uploader's choice) into heading blocks."""
    blocks: list[Block] = []
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
            blocks.append(Block(level, heading, out.result()))
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
    blocks.append(Block(level, heading, out.result()))
    return blocks


def _fenced(code: str) -> str:
    """``code`` as a fenced block, the fence longer than any backtick fence inside it."""
    code = "\n".join(line.rstrip() for line in code.split("\n")).strip("\n")
    if not code.strip():
        return ""
    longest = max((len(m.group(1)) for m in _BACKTICK_LINE.finditer(code)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}\n{code}\n{fence}"
