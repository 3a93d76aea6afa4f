"""ZIP-based formats (docx, pptx, xlsx, epub): which one a ZIP is, from its members, and a bomb check.

The check reads only the central directory: member count and declared sizes. Python's zipfile stops
inflating a member at its declared size, so a member cannot inflate past what the directory says.
"""

from __future__ import annotations

import io
import zipfile
from typing import Final

from chatbot.errors import PayloadTooLarge, UnreadableDocument

SIGNATURE: Final = b"PK\x03\x04"
MAX_MEMBERS: Final = 10_000

# The member that marks each ZIP-based format (the first that matches wins).
_MARKERS: Final = (
    ("word/document.xml", ".docx"),
    ("ppt/presentation.xml", ".pptx"),
    ("xl/workbook.xml", ".xlsx"),
    ("META-INF/container.xml", ".epub"),
)


def open_zip(data: bytes, max_unpacked: int) -> zipfile.ZipFile:
    """``data`` as a ZipFile, refused when damaged, encrypted, or inflating past ``max_unpacked`` bytes."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except Exception as exc:  # zipfile raises BadZipFile, NotImplementedError, ValueError... on damage
        raise UnreadableDocument("The file is a damaged ZIP archive.") from exc
    if len(members) > MAX_MEMBERS:
        raise PayloadTooLarge(
            f"The archive has {len(members):,} members; the limit is {MAX_MEMBERS:,}.",
            code="document_too_large",
        )
    unpacked = sum(m.file_size for m in members)
    if unpacked > max_unpacked:
        raise PayloadTooLarge(
            f"The file unpacks to {unpacked:,} bytes; the limit is {max_unpacked:,}.",
            code="document_too_large",
            details={"limit_unpacked_bytes": max_unpacked},
        )
    if any(m.flag_bits & 0x1 for m in members):
        raise UnreadableDocument(
            "The document is password-protected; upload an unprotected copy.", code="encrypted_document"
        )
    return archive


def kind(data: bytes) -> str | None:
    """The suffix of the ZIP-based format ``data`` is (".docx", ...), or None for another ZIP or a bad one."""
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except Exception:  # damaged: the suffix decides, and that loader reports the damage
        return None
    return next((suffix for member, suffix in _MARKERS if member in names), None)
