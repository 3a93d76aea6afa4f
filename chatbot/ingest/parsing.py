"""Parse uploads in worker processes with a CPU, memory and wall-clock budget per document.

A hostile file (a 10 KB PDF whose pages share one huge content stream, a decompression bomb) can cost
minutes of CPU or gigabytes of memory inside a parsing library, where no check of ours runs. So every
document is parsed (and chunked) in its own process forked from a forkserver that has the parsers imported:
the child sets RLIMIT_CPU and RLIMIT_AS on itself before it reads a byte (OCR's tesseract inherits them),
the parent kills it at the wall-clock limit or when the awaiting task is cancelled (a client that leaves, a
cancelled job), and the outcome is a clear per-file error: ``parse_timeout`` past the CPU or wall budget,
``document_too_large`` past the memory budget, ``unreadable_document`` when the parser died otherwise.

Fairness: ``workers`` processes at most run at once, and one tenant holds at most ``per_tenant`` of them,
so one tenant's queue of expensive files never makes another tenant's upload wait for a slot (a tenant
waits for its own slot before it competes for a shared one).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from chatbot.errors import ChatbotError, PayloadTooLarge, UnreadableDocument, UnsupportedMediaType
from chatbot.ingest.chunking import Chunk, chunk_document
from chatbot.ingest.loaders import ParsedDocument, load_document
from chatbot.ingest.loaders.document import Limits
from chatbot.settings import ParsingSettings

_ERRORS: Final = {cls.__name__: cls for cls in (PayloadTooLarge, UnsupportedMediaType, UnreadableDocument)}
_PRELOAD: Final = ["chatbot.ingest.loaders.preload"]


@dataclass(frozen=True, slots=True)
class Budget:
    """What parsing one document may cost."""

    cpu_seconds: int = 60
    memory_bytes: int = 2 * 1024**3
    wall_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed document (its sections dropped: the chunks carry the text) and its chunks."""

    source: str
    title: str
    media_type: str
    chunks: list[Chunk]


def parse_and_chunk(source: str, data: bytes, limits: Limits, max_bytes: int) -> Parsed:
    """Load and chunk in this process: what a worker runs, and what tests of loaders call directly."""
    doc: ParsedDocument = load_document(source, data, max_bytes=max_bytes, limits=limits)
    return Parsed(doc.source, doc.title, doc.media_type, chunk_document(doc))


def parser_pool(settings: ParsingSettings) -> ParserPool:
    """The pool ``settings.parsing`` describes."""
    return ParserPool(
        workers=settings.workers,
        per_tenant=settings.per_tenant,
        budget=Budget(settings.cpu_seconds, settings.memory_mb * 1024**2, settings.wall_seconds),
        limits=Limits(
            settings.max_pdf_pages,
            settings.max_chars,
            max_unpacked_bytes=settings.max_unpacked_mb * 1024**2,
            json_text_field=settings.json_text_field,
            ocr=settings.ocr,
        ),
    )


class ParserPool:
    """Runs ``parse_and_chunk`` in budgeted child processes, fairly across tenants."""

    def __init__(
        self,
        *,
        workers: int = 2,
        per_tenant: int = 1,
        budget: Budget | None = None,
        limits: Limits | None = None,
        parse: Callable[[str, bytes, Limits, int], Parsed] = parse_and_chunk,
    ) -> None:
        self.budget = budget or Budget()
        self.limits = limits or Limits(2000, 5_000_000)
        self.per_tenant = max(1, min(per_tenant, workers))
        self._slots = asyncio.Semaphore(workers)
        self._tenants: dict[str, asyncio.Semaphore] = {}
        self._waiting: dict[str, int] = {}
        self._parse = parse
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)

    async def parse(self, tenant: str, source: str, data: bytes, max_bytes: int) -> Parsed:
        """``source`` parsed and chunked in a worker; a ChatbotError with a per-file code on failure."""
        gate = self._tenants.setdefault(tenant, asyncio.Semaphore(self.per_tenant))
        self._waiting[tenant] = self._waiting.get(tenant, 0) + 1
        try:
            async with gate, self._slots:
                return await self._run(source, data, max_bytes)
        finally:
            self._waiting[tenant] -= 1
            if not self._waiting[tenant]:  # forget idle tenants: the map stays as small as the queue
                del self._waiting[tenant]
                self._tenants.pop(tenant, None)

    async def _run(self, source: str, data: bytes, max_bytes: int) -> Parsed:
        receiver, sender = self._ctx.Pipe(duplex=False)
        args = (sender, self._parse, source, data, self.limits, max_bytes, self.budget)
        process = self._ctx.Process(target=_work, args=args, daemon=True, name="chatbot-parse")
        await asyncio.to_thread(process.start)
        sender.close()
        try:
            async with asyncio.timeout(self.budget.wall_seconds):
                outcome = await asyncio.to_thread(_receive, receiver)
        except TimeoutError:
            raise UnreadableDocument(
                f"Parsing took longer than {self.budget.wall_seconds:g} s; the file was skipped.",
                code="parse_timeout",
            ) from None
        finally:
            if process.is_alive():
                process.kill()  # cancelled or out of time: the parser stops now, and its slot is free
            receiver.close()
            await asyncio.to_thread(process.join, 5)
        if outcome is None:
            raise _death(process.exitcode)
        if outcome[0] == "ok":
            parsed: Parsed = outcome[1]
            return parsed
        _, kind, code, message, details = outcome
        raise _ERRORS.get(kind, UnreadableDocument)(message, code=code, details=details)


def _receive(receiver: Connection) -> Any:
    try:
        return receiver.recv()
    except (EOFError, OSError):  # the child died (killed, out of CPU) or was killed by us
        return None


def _death(exitcode: int | None) -> ChatbotError:
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return UnreadableDocument(
            "Parsing used up its CPU budget; the file was skipped.", code="parse_timeout"
        )
    return UnreadableDocument("The parser failed on this file.")


def _work(
    sender: Connection,
    parse: Callable[[str, bytes, Limits, int], Parsed],
    source: str,
    data: bytes,
    limits: Limits,
    max_bytes: int,
    budget: Budget,
) -> None:
    """The child: limit itself, parse, send ("ok", Parsed) or ("error", class, code, message, details)."""
    resource.setrlimit(resource.RLIMIT_CPU, (budget.cpu_seconds, budget.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (budget.memory_bytes, budget.memory_bytes))
    try:
        outcome: tuple[Any, ...] = ("ok", parse(source, data, limits, max_bytes))
    except ChatbotError as exc:
        outcome = ("error", type(exc).__name__, exc.code, exc.message, exc.details)
    except MemoryError:
        outcome = (
            "error",
            "PayloadTooLarge",
            "document_too_large",
            "Parsing the file needs more memory than a document may use.",
            {"limit_memory_bytes": budget.memory_bytes},
        )
    try:
        sender.send(outcome)
    except MemoryError:  # a result too large to pickle within the budget
        sender.send(("error", "PayloadTooLarge", "document_too_large", "The parsed file is too large.", {}))
    finally:
        sender.close()
        os._exit(0)  # skip interpreter teardown: the parent already has the result
