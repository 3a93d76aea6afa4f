"""Plain text, and the decoding every text format shares: bytes in an unknown encoding -> clean str.

Detection of a legacy encoding is charset-normalizer's; around it we keep a few small rules of our own,
each because it measured better. Corpus: 24 hand-written paragraphs in 20 languages, each in the legacy
codec people save it in (cp1252, latin-1, cp1250, cp1251, koi8-r, iso-8859-2/7, cp1253-1256, cp874,
shift_jis, euc-jp, gb18030, big5, euc-kr); decoded alone, inside a 230 KB ASCII document, and as UTF-8
with one stray byte; test_loaders.py keeps the corpus. Exact decodes, and the time for 19 MB of ASCII on
one line plus one "é" (2-core box, noisy):

=================================  =====  ==============  ================  ==============================
decoder                            alone  in ASCII doc    UTF-8 + stray     19 MB line + "é"
=================================  =====  ==============  ================  ==============================
before: UTF-8, else cp1252         6/24   6/24            24/24             1.0 s
charset-normalizer alone           19/24  5/24            0/24              3.3 s, read as EBCDIC (cp037)
charset-normalizer + rules below   22/24  22/24           24/24             1.1-2.2 s (decoding dominates)
=================================  =====  ==============  ================  ==============================

1. UTF-8 with a few bad bytes stays UTF-8 (with U+FFFD): the detector reads "Zürich" as "ZĂĽrich".
2. Only the lines around non-ASCII bytes (at most 64 KB) go to the detector, and only ASCII-compatible
   codecs are candidates: ASCII carries no evidence, and sampling it made detection slow and wrong.
   The chosen codec then decodes everything.
3. Where cp1250, cp1252 and latin-1 fit equally (Western European text), or no language is recognised in
   a single-byte reading, the text is read as Windows-1252, the usual legacy encoding: alone, the detector
   read English, French and Portuguese as cp1250 ("naďve").
Still wrong: Turkish cp1254 read as cp1252 (6 letters differ), and short EUC-JP read as EUC-KR.
"""

from __future__ import annotations

import codecs
import functools
import re
from types import MappingProxyType
from typing import Final

from charset_normalizer import from_bytes
from charset_normalizer.constant import IANA_SUPPORTED
from charset_normalizer.utils import is_multi_byte_encoding

from chatbot.errors import UnsupportedMediaType
from chatbot.ingest.loaders.document import CLEAN, Limits, Loaded, single_section

EVIDENCE_BYTES: Final = 65_536
# Source code and configuration read as plain text (one section under the file's name).
CODE_SUFFIXES: Final = tuple(
    f".{ext}"
    for ext in (
        *("py", "pyi", "js", "mjs", "cjs", "ts", "tsx", "jsx", "java", "kt", "scala", "go", "rs", "c", "h"),
        *("cc", "cpp", "hpp", "cs", "swift", "rb", "php", "pl", "lua", "r", "jl", "sh", "bash", "zsh", "ps1"),
        *("sql", "css", "scss", "less", "vue", "svelte", "yaml", "yml", "toml", "ini", "cfg", "conf"),
        *("properties", "gradle", "cmake", "mk", "tex", "proto", "graphql", "dart", "ex", "exs", "erl"),
        *("hs", "ml", "clj", "el", "nim", "zig"),
    )
)
_WINDOW: Final = 1024  # bytes of a long line kept on each side of a non-ASCII byte
_WESTERN: Final = frozenset({"cp1252", "latin_1", "iso8859_15"})
_HIGH_BYTE: Final = re.compile(rb"[\x80-\xff]")
_META_CHARSET: Final = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.I
)
_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
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


def load_text(data: bytes, stem: str, limits: Limits) -> Loaded:
    """A .txt file: one section under its stem; markdown-looking lines stay text."""
    del limits
    return single_section(decode_text(data), stem)


def decode_text(data: bytes, *, html: bool = False) -> str:
    """Decode uploaded text without ever failing, and normalise newlines to "\\n".

    A UTF-8/UTF-16/UTF-32 byte order mark decides the codec (and is removed). Otherwise strict UTF-8 is
    tried first. If that fails, an HTML file's ``<meta charset>`` is honoured when it names a real text
    codec. Failing that, the bytes are read as UTF-8 with U+FFFD for bad bytes when they hold at least as
    many valid multi-byte characters as bad bytes (a UTF-8 file with a stray byte), and otherwise in the
    legacy encoding detected as the module docstring describes (Windows-1252 when nothing fits; its 5
    undefined bytes fall back to Latin-1). Control characters other than tab and newline are dropped; form
    feeds and Unicode line separators become newlines.
    """
    text = _decode(data, html=html)
    sample = text[:65536]
    controls = len(sample) - len(sample.translate(_BINARY_CONTROLS))
    if controls > 2 and controls * 10 > len(sample):
        raise UnsupportedMediaType("The file does not look like text: it is full of control characters.")
    return text.replace("\r\n", "\n").translate(CLEAN)


def _decode(data: bytes, *, html: bool) -> str:
    for bom, codec in _BOMS:
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
    return _decode_legacy(data)


def _decode_legacy(data: bytes) -> str:
    """``data`` in the ASCII-compatible codec charset-normalizer finds in its non-ASCII lines."""
    matches = from_bytes(_evidence(data), cp_isolation=_ascii_compatible_codecs())
    best = matches.best()
    if best is None:
        return _windows_1252(data)
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    western = {m.encoding for m in tied} | set(best.could_be_from_charset)
    # No language recognised: a single-byte guess is arbitrary, and a multi-byte one is only as good as
    # the absence of an equally clean single-byte reading (two bytes "\xe9\x80" are one CJK character).
    unsure = not best.coherence and not all(is_multi_byte_encoding(m.encoding) for m in tied)
    if unsure or western & _WESTERN:
        return _windows_1252(data)
    return data.decode(best.encoding, errors="replace")


def _evidence(data: bytes) -> bytes:
    """The lines holding non-ASCII bytes (long lines: a window around the first), up to EVIDENCE_BYTES.

    Every cut falls after an ASCII byte, which no ASCII-compatible multi-byte codec uses as a lead byte,
    so the pieces decode like the whole (only a window inside a long run of non-ASCII bytes may not).
    """
    pieces: list[bytes] = []
    size = pos = 0
    while size < EVIDENCE_BYTES and (found := _HIGH_BYTE.search(data, pos)) is not None:
        hit = found.start()
        start = max(data.rfind(b"\n", 0, hit) + 1, pos, hit - _WINDOW)  # bytes in [pos, hit) are ASCII
        end = data.find(b"\n", hit)
        end = len(data) if end < 0 else end
        if end - hit > _WINDOW:
            cut = hit + _WINDOW
            while cut > hit and data[cut - 1] >= 0x80:
                cut -= 1
            end = cut if cut > hit else hit + _WINDOW
        pieces.append(data[start:end])
        size += end - start + 1
        pos = end
    return b"\n".join(pieces)


@functools.cache
def _ascii_compatible_codecs() -> list[str]:
    """The detector's codecs that read bytes 0-127 as ASCII (no EBCDIC, UTF-7, UTF-16/32)."""
    ascii_bytes = bytes(range(128))
    found = []
    for name in IANA_SUPPORTED:
        try:
            if codecs.decode(ascii_bytes, name) == ascii_bytes.decode("ascii"):
                found.append(name)
        except (UnicodeDecodeError, LookupError):
            continue
    return found


def _windows_1252(data: bytes) -> str:
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
