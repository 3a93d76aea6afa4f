"""File names from uploads, made safe to store and show: the one normalisation every uploaded name goes through.

A client chooses an upload's name freely; it ends up in the store (`source`), in API responses, in citations
and in the widget. safe_filename() keeps what a person would recognise and drops what an attacker would use:

- NFKC first, so full-width and other compatibility forms (U+FF1C, U+FF0F) are judged as what they look like;
- only the last path component (after `/` or `\\`), so `../../etc/x.md` is `x.md`;
- invisible and control characters (zero-width, bidi overrides, NUL, ...) are removed; markup and
  shell/filesystem-reserved characters (< > " ' ` & : * ? |) become `_`; whitespace runs become one space;
- leading and trailing dots, spaces, underscores and hyphens go (no hidden files, no `..`);
- at most MAX_FILENAME_CHARS characters, cut in the stem so the extension (which picks the loader) is kept;
- never empty: a name with nothing left is FALLBACK_STEM (plus its extension).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_FILENAME_CHARS: Final = 120
FALLBACK_STEM: Final = "upload"
MAX_EXTENSION_CHARS: Final = 10
"""A suffix longer than this (or not alphanumeric) is part of the stem, not an extension."""

_INVISIBLE: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
_RESERVED: Final = re.compile(r"[<>\"'`&:*?|]+")
_RUNS: Final = re.compile(r"\s+")
_UNDERSCORES: Final = re.compile(r"_{2,}")
_EXTENSION: Final = re.compile(rf"[A-Za-z0-9]{{1,{MAX_EXTENSION_CHARS}}}")
_EDGES: Final = " ._-"


def safe_filename(raw: str) -> str:
    """`raw` normalised and bounded as the module says; stable (a safe name maps to itself)."""
    text = unicodedata.normalize("NFKC", raw)
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(
        " " if c.isspace() else c for c in text if unicodedata.category(c) not in _INVISIBLE or c.isspace()
    )
    text = _UNDERSCORES.sub("_", _RESERVED.sub("_", text))
    text = _RUNS.sub(" ", text).rstrip(_EDGES).lstrip(" _-")  # so "a_.md " is "a.md" on the first pass
    stem, dot, ext = text.rpartition(".")
    if not dot or not _EXTENSION.fullmatch(ext):
        stem, ext = text, ""
    suffix = f".{ext}" if ext else ""
    stem = stem.strip(_EDGES)[: MAX_FILENAME_CHARS - len(suffix)].rstrip(_EDGES) or FALLBACK_STEM
    return stem + suffix
