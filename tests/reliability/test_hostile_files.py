"""Hostile and broken files end in a clear per-file error within a bounded CPU time and memory, free their
worker, and never make another tenant's upload wait (issue 14 item 2, issue 12 "Bad input").

Every file is generated here. The pool runs real forkserver children with real rlimits; the budgets are
small so that each test stays cheap.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, NameObject

from chatbot.errors import ChatbotError
from chatbot.ingest.loaders.document import Limits
from chatbot.ingest.parsing import Budget, Parsed, ParserPool, parse_and_chunk
from tests.fakes import documents

LIMITS = Limits(max_pdf_pages=2000, max_pdf_chars=5_000_000, max_unpacked_bytes=32 * 1024 * 1024)
BUDGET = Budget(cpu_seconds=2, memory_bytes=768 * 1024**2, wall_seconds=20)


def burn_or_parse(source: str, data: bytes, limits: Limits, max_bytes: int) -> Parsed:
    """A parser stand-in for a file that costs CPU forever ("burn:<pidfile>"); others parse normally."""
    if source.startswith("burn:"):
        Path(source[5:]).write_text(str(os.getpid()))
        while True:
            pass
    if source.startswith("hog"):
        hoard = []
        while True:
            hoard.append(bytearray(64 * 1024**2))
    return parse_and_chunk(source, data, limits, max_bytes)


def pool(**kwargs: object) -> ParserPool:
    options: dict[str, object] = {"workers": 2, "per_tenant": 1, "budget": BUDGET, "limits": LIMITS}
    options.update(kwargs)
    return ParserPool(**options)  # type: ignore[arg-type]


async def error_of(parser: ParserPool, name: str, data: bytes) -> ChatbotError:
    with pytest.raises(ChatbotError) as caught:
        await parser.parse("tenant-a", name, data, 50 * 1024**2)
    return caught.value


def shared_stream_pdf(pages: int = 200, operations: int = 60_000) -> bytes:
    """Every page draws the same large content stream: tiny compressed, costly to interpret N times."""
    writer = PdfWriter()
    body = b"BT /F1 1 Tf " + b"1 0 0 1 0 0 Tm (x) Tj " * operations + b"ET"
    stream = DecodedStreamObject()
    stream.set_data(body)
    stream = stream.flate_encode(level=9)
    ref = writer._add_object(stream)
    for _ in range(pages):
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Contents")] = ref
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def many_objects_pdf(objects: int = 100_000) -> bytes:
    """One page whose content is an array of ``objects`` tiny streams."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    parts = ArrayObject()
    for _ in range(objects):
        stream = DecodedStreamObject()
        stream.set_data(b"0 0 m ")
        parts.append(writer._add_object(stream))
    page[NameObject("/Contents")] = parts
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def blank_pages_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.append(io.BytesIO(documents.text_pdf(2, toc=False)))
    writer.encrypt(user_password="hunter2", owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


class TestHostileFiles:
    async def test_shared_content_stream_pdf_is_stopped_by_the_cpu_budget(self) -> None:
        """A small PDF whose pages share one huge content stream ends in parse_timeout within its budget."""
        data = shared_stream_pdf()
        assert len(data) < 200_000
        started = time.monotonic()
        error = await error_of(pool(), "stream.pdf", data)
        assert error.code == "parse_timeout"
        assert time.monotonic() - started < BUDGET.wall_seconds

    async def test_many_tiny_objects_end_within_the_budget(self) -> None:
        """A page made of 100,000 tiny content streams (no text) ends as unreadable_document within budget."""
        started = time.monotonic()
        error = await error_of(pool(), "objects.pdf", many_objects_pdf())
        assert error.code == "unreadable_document"
        assert time.monotonic() - started < BUDGET.wall_seconds

    async def test_decompression_bomb_docx_is_too_large(self) -> None:
        """A docx whose document.xml inflates past the unpacked limit is document_too_large, unread."""
        bomb = documents.zip_bomb(size=64 * 1024**2)
        assert len(bomb) < 200_000
        error = await error_of(pool(), "bomb.docx", bomb)
        assert error.code == "document_too_large"

    async def test_too_many_pages_is_too_large(self) -> None:
        """A 2,001-page PDF is refused as document_too_large before any page is read."""
        error = await error_of(pool(), "long.pdf", blank_pages_pdf(2001))
        assert error.code == "document_too_large"

    async def test_encrypted_pdf_says_so(self) -> None:
        """A password-protected PDF is encrypted_document."""
        error = await error_of(pool(), "locked.pdf", encrypted_pdf())
        assert error.code == "encrypted_document"

    async def test_encrypted_office_file_says_so(self) -> None:
        """A ZIP member flagged as encrypted makes the whole docx encrypted_document."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("word/document.xml", "<w:document/>")
        data = bytearray(out.getvalue())
        for header in (b"PK\x03\x04", b"PK\x01\x02"):  # set the encryption flag bit in both headers
            at = data.find(header)
            flag = at + (6 if header == b"PK\x03\x04" else 8)
            data[flag] |= 0x01
        error = await error_of(pool(), "locked.docx", bytes(data))
        assert error.code == "encrypted_document"

    async def test_password_protected_office_container_says_so(self) -> None:
        """An OLE container holding an EncryptedPackage (how Office saves a protected docx) is encrypted."""
        header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
        directory = "EncryptedPackage".encode("utf-16-le").ljust(128, b"\0")
        error = await error_of(pool(), "locked.docx", header + directory + bytes(4096))
        assert error.code == "encrypted_document"

    async def test_legacy_office_file_names_the_fix(self) -> None:
        """A .doc (OLE, unencrypted) is unsupported_media_type with a message saying which format to use."""
        header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
        error = await error_of(pool(), "old.doc", header + bytes(4096))
        assert error.code == "unsupported_media_type"
        assert "save it as .docx" in error.message

    @pytest.mark.parametrize("name", ["cut.pdf", "cut.docx", "cut.xlsx", "cut.pptx", "cut.epub"])
    async def test_truncated_files_are_unreadable(self, name: str) -> None:
        """A file cut in half is unreadable_document (or, for a ZIP, refused as unsupported), never a crash."""
        whole = {
            ".pdf": documents.text_pdf(2, toc=False),
            ".docx": documents.docx(),
            ".xlsx": documents.xlsx(),
            ".pptx": documents.pptx(),
            ".epub": documents.epub(),
        }["." + name.split(".")[1]]
        error = await error_of(pool(), name, whole[: len(whole) // 2])
        assert error.code in {"unreadable_document", "unsupported_media_type"}

    async def test_memory_hog_is_stopped_by_the_memory_budget(self) -> None:
        """A parser that allocates without end is stopped at the memory budget: document_too_large."""
        error = await error_of(pool(parse=burn_or_parse), "hog.txt", b"x")
        assert error.code == "document_too_large"


class TestWorkersAreFreedAndShared:
    async def test_other_tenant_upload_completes_while_one_tenant_burns(self, tmp_path: Path) -> None:
        """Tenant A's three CPU-burning files hold one worker; tenant B's small file is parsed meanwhile."""
        parser = pool(parse=burn_or_parse)
        hostile = [
            asyncio.create_task(parser.parse("tenant-a", f"burn:{tmp_path / str(i)}", b"x", 1024))
            for i in range(3)
        ]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        parsed = await parser.parse("tenant-b", "small.pdf", documents.text_pdf(2, toc=False), 50 * 1024**2)
        waited = time.monotonic() - started
        assert parsed.chunks
        assert not all(task.done() for task in hostile)  # B did not wait for A's queue to drain
        assert waited < BUDGET.cpu_seconds * 3
        for outcome in await asyncio.gather(*hostile, return_exceptions=True):
            assert isinstance(outcome, ChatbotError)
            assert outcome.code == "parse_timeout"

    async def test_cancelling_the_request_kills_its_parser(self, tmp_path: Path) -> None:
        """A cancelled parse (client gone, job cancelled) kills the worker process at once."""
        parser = pool(parse=burn_or_parse, budget=Budget(cpu_seconds=60, wall_seconds=60))
        pidfile = tmp_path / "pid"
        task = asyncio.create_task(parser.parse("tenant-a", f"burn:{pidfile}", b"x", 1024))
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text():
                break
            await asyncio.sleep(0.05)
        pid = int(pidfile.read_text())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"parser {pid} still runs after its request was cancelled")
        # The slot is free again: the same tenant's next file is parsed.
        parsed = await parser.parse("tenant-a", "next.txt", b"Next file.", 1024)
        assert parsed.chunks[0].text == "Next file."
