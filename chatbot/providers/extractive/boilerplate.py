"""Text an answer must never quote: running headers and footers, tables of contents, navigation, page numbers.

The loaders already drop what they can see as such (the PDF loader removes lines repeated at the top and
bottom of pages); this is the answerer's own guard, for passages from any loader and for what slips through.
Two kinds of evidence:
- the line alone: a dot-leader TOC entry ("2 Migration . . . . 3"), "Contents", a page number ("12",
  "Page 3 of 10", "- 4 -"), a breadcrumb ("Home > Docs > Install"), a navigation label ("Next",
  "Skip to content", "Back to top"), a copyright footer;
- repetition: a short line without closing punctuation found in two or more of the passages (digits
  ignored, so "Confidential - page 3" and "... page 4" are one line) is a running header or footer.
  Sentences shared by overlapping chunks end with punctuation and are not touched.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_MAX_REPEATED_WORDS = 12  # a running header is a short line
_LEADER_TAIL = 160  # a dot leader is looked for at the end of a line only (bounded regex work)
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_DOT_LEADER = re.compile(r"(\.\s?){4,}\s*\d+\s*$|\u2026{2,}\s*\d+\s*$|_{4,}\s*\d+\s*$")
_PAGE_NUMBER = re.compile(
    r"^\s*(?:[-\u2013\u2014]\s*)?(?:page|p\.|pg\.?|seite|p\u00e1gina)?\s*\d{1,4}(?:\s*(?:of|/|de|von)\s*\d{1,4})?"
    r"(?:\s*[-\u2013\u2014])?\s*$",
    re.IGNORECASE,
)
_ROMAN_PAGE = re.compile(r"^\s*[ivxlc]{1,6}\s*$", re.IGNORECASE)
_CRUMB_SEPARATOR = re.compile(r"\s(?:>|\u203a|\u00bb|/|\u2192)\s")
_PAGER = re.compile(
    r"^(?:[\u00ab\u2039\u2190<]\s*)?(?:next|previous|prev)\b\s*(?:[:\u00bb\u203a\u2192>]|$)", re.IGNORECASE
)
_NAVIGATION = frozenset(
    {
        "contents",
        "table of contents",
        "on this page",
        "in this article",
        "skip to content",
        "skip to main content",
        "skip navigation",
        "jump to navigation",
        "back to top",
        "return to top",
        "home",
        "menu",
        "main menu",
        "navigation",
        "search",
        "next",
        "previous",
        "prev",
        "next page",
        "previous page",
        "edit this page",
        "edit on github",
        "print this page",
        "share",
        "all rights reserved",
    }
)
_ARROWS = " \t\u00ab\u00bb\u2039\u203a\u2190\u2192<>|\u00b7\u2022-\u2013\u2014:"
_COPYRIGHT = re.compile(r"^\s*(?:\u00a9|\(c\)|copyright\b)", re.IGNORECASE)
_CLOSING = re.compile(r"[.!?:;,][\"')\]]*\s*$")
_DIGITS = re.compile(r"\d+")


def is_boilerplate(text: str) -> bool:
    """True for a line or sentence that is page furniture rather than content."""
    line = " ".join(text.split())
    if not line:
        return False
    bare = line.strip(_ARROWS).rstrip(".").lower()
    if bare in _NAVIGATION or _PAGER.match(line):
        return True
    if _PAGE_NUMBER.match(line) or _ROMAN_PAGE.match(line) or _DOT_LEADER.search(line[-_LEADER_TAIL:]):
        return True
    if _COPYRIGHT.match(line):
        return True
    return _is_breadcrumb(line)


def _is_breadcrumb(line: str) -> bool:
    """ "Home > Docs > Install": two or more short capitalised parts between separators, no punctuation."""
    parts = _CRUMB_SEPARATOR.split(line)
    if len(parts) < 2 or _CLOSING.search(line):
        return False
    return all(0 < len(part.split()) <= 4 and (part[:1].isupper() or part[:1].isdigit()) for part in parts)


def repeated_lines(texts: Sequence[str]) -> frozenset[str]:
    """Keys (see line_key) of the short, unpunctuated lines found in two or more of the texts."""
    seen: Counter[str] = Counter()
    for text in texts:
        keys = {_key for line in text.splitlines() if (_key := _repeatable_key(line))}
        seen.update(keys)
    return frozenset(key for key, count in seen.items() if count >= 2)


def line_key(line: str) -> str:
    """A line as compared for repetition: whitespace collapsed, case folded, digits as '#'."""
    return _DIGITS.sub("#", " ".join(line.split()).casefold())


def _repeatable_key(line: str) -> str:
    words = line.split()
    if not words or len(words) > _MAX_REPEATED_WORDS or _CLOSING.search(line):
        return ""
    if line.lstrip().startswith(("#", "|", "-", "*", ">", "`", "<")):
        return ""  # markdown structure: headings, tables, lists, quotes, code are not page furniture
    return line_key(line)


def strip_boilerplate(text: str, repeated: frozenset[str] = frozenset()) -> str:
    """The text without its boilerplate lines (fenced code is left as it is)."""
    kept: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and line.strip().startswith(fence):
                fence = None
            kept.append(line)
            continue
        if opened:
            fence = opened.group(1)
            kept.append(line)
            continue
        if is_boilerplate(line) or (repeated and line_key(line) in repeated and _repeatable_key(line)):
            continue
        kept.append(line)
    return "\n".join(kept)
