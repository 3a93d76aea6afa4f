"""Documents as users have them, generated here with the libraries of each format, ingested through the
Ingestor and the HTTP upload: a question about each retrieves the right document and the right page."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from chatbot.app import create_app
from chatbot.ingest.loaders.document import Limits
from chatbot.ingest.parsing import parse_and_chunk
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.fakes import documents
from tests.serving import serve_app

# (file name, maker, question, expected page or None for unpaged formats)
CORPUS: list[tuple[str, Callable[[], bytes], str, int | None]] = [
    ("report.pdf", documents.text_pdf, "When does the blue heron migrate to the Camargue?", 3),
    ("handbook.docx", documents.docx, "Within how many days must expense claims be filed?", None),
    ("deck.pptx", documents.pptx, "How much did the glacier division revenue rise?", 2),
    ("prices.xlsx", documents.xlsx, "Which supplier sells Molybdenum?", None),
    ("river.epub", documents.epub, "How many bridges does the ferryman count?", None),
    ("records.jsonl", documents.jsonl, "Which record mentions the number 14?", None),
]
if shutil.which("tesseract"):
    CORPUS.append(
        ("scan.pdf", documents.scanned_pdf, "How often does the lighthouse keeper log the fog signal?", 1)
    )


@pytest.fixture
async def formats_app(
    offline_providers: Providers, guide_store: VectorStore
) -> AsyncIterator[tuple[str, Services]]:
    settings = make_settings()
    async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
        async with serve_app(create_app(settings, services=svc)) as url:
            yield url, svc


def page_of(name: str, data: bytes, chunk_index: int) -> int | None:
    """The page the ingested chunk carries (the same parse the Ingestor ran)."""
    parsed = parse_and_chunk(name, data, Limits(2000, 5_000_000), 50 * 1024**2)
    return parsed.chunks[chunk_index].page_start


async def assert_answers(svc: Services, tenant: str, corpus: dict[str, bytes]) -> None:
    for name, _, question, page in CORPUS:
        sources = await svc.pipeline.retriever.search(tenant, question)
        top = sources[0]
        assert top.source == name, (question, [s.source for s in sources])
        assert page_of(name, corpus[name], top.chunk_index) == page, question


class TestFormats:
    async def test_corpus_through_the_ingestor(self, formats_app: tuple[str, Services]) -> None:
        """Each generated document is ingested and a question about it retrieves its document and page."""
        _, svc = formats_app
        corpus = {name: make() for name, make, _, _ in CORPUS}
        for name, data in corpus.items():
            result = await svc.ingestor.ingest_bytes("formats-a", name, data)
            assert result.chunks > 0, name
        await assert_answers(svc, "formats-a", corpus)

    async def test_corpus_through_the_http_upload(self, formats_app: tuple[str, Services]) -> None:
        """The same corpus uploaded in one request: every file ingested, none skipped, questions answered."""
        url, svc = formats_app
        corpus = {name: make() for name, make, _, _ in CORPUS}
        files = [("file", (name, data)) for name, data in corpus.items()]
        async with httpx.AsyncClient(
            base_url=url, headers={"X-Chatbot-Tenant": "formats-b"}, timeout=120
        ) as c:
            response = await c.post("/v1/documents", files=files)
        assert response.status_code == 201, response.text
        body = response.json()
        assert sorted(d["source"] for d in body["documents"]) == sorted(corpus)
        assert body["skipped"] == []
        await assert_answers(svc, "formats-b", corpus)

    async def test_upload_lists_the_files_it_skipped(self, formats_app: tuple[str, Services]) -> None:
        """A bad file next to a good one is listed in skipped with its code; the good one is ingested."""
        url, _ = formats_app
        files = [
            ("file", ("good.md", b"# Good\n\nFine text.\n")),
            ("file", ("photo.png", b"\x89PNG\r\n\x1a\n")),
        ]
        async with httpx.AsyncClient(base_url=url, headers={"X-Chatbot-Tenant": "formats-c"}) as client:
            response = await client.post("/v1/documents", files=files)
        assert response.status_code == 201, response.text
        body = response.json()
        assert [d["source"] for d in body["documents"]] == ["good.md"]
        assert [(s["source"], s["code"]) for s in body["skipped"]] == [
            ("photo.png", "unsupported_media_type")
        ]

    async def test_folder_of_unknown_files_reports_why(
        self, formats_app: tuple[str, Services], tmp_path: Path
    ) -> None:
        """A folder of unknown extensions reports each file as skipped with its reason, never "0 files"."""
        _, svc = formats_app
        (tmp_path / "a.xyz").write_bytes(b"some bytes")
        (tmp_path / "b.bin").write_bytes(b"\x00\x01\x02")
        (tmp_path / "empty.md").write_bytes(b"")
        (tmp_path / "real.pdf.bak").write_bytes(documents.text_pdf(2, toc=False))  # content says PDF
        report = await svc.ingestor.ingest_paths("formats-d", [tmp_path], root=tmp_path)
        assert [d.source for d in report.documents] == ["real.pdf.bak"]
        assert {(s.source, s.code) for s in report.skipped} == {
            ("a.xyz", "unsupported_media_type"),
            ("b.bin", "unsupported_media_type"),
            ("empty.md", "unreadable_document"),
        }
        assert all(s.reason for s in report.skipped)
