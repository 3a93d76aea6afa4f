"""Answer quality offline: paraphrased questions about the user guide and the generated document corpus,
asked through the chat service (retrieval + the extractive answer), cite the document that holds the answer.

The pairs live in tests/fixtures/answer_pairs.jsonl, one JSON object a line:
{"question": str, "expected_source": <the document's source name, as ingested>, "kind": "guide" | "corpus"}.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatbot.chat.caller import Caller
from chatbot.chat.service import Ask
from chatbot.providers.extractive import ExtractiveChatModel
from chatbot.providers.registry import Providers, extractive_embedder
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import GUIDE, make_settings
from tests.fakes import documents

PAIRS = Path(__file__).resolve().parents[1] / "fixtures" / "answer_pairs.jsonl"
TENANT = "answer-pairs"
CORPUS = {
    "report.pdf": documents.text_pdf,
    "handbook.docx": documents.docx,
    "deck.pptx": documents.pptx,
    "prices.xlsx": documents.xlsx,
    "river.epub": documents.epub,
    "records.jsonl": documents.jsonl,
    "scan.pdf": documents.scanned_pdf,
}
log = logging.getLogger(__name__)
_CITATION = re.compile(r"\[(\d{1,3})\]")


def load_pairs(path: Path = PAIRS) -> list[dict[str, str]]:
    """The question / expected-source pairs of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cited_sources(text: str, sources: dict[int, str]) -> list[str]:
    """The source names an answer cites, in order of first citation."""
    out: list[str] = []
    for n in _CITATION.findall(text):
        name = sources.get(int(n))
        if name is not None and name not in out:
            out.append(name)
    return out


@pytest.fixture
async def pairs_services(offline_providers: Providers, guide_store: VectorStore) -> AsyncIterator[Services]:
    """Services whose tenant holds the user guide and the generated corpus, ingested with the real models;
    the extractive answer scores sentences with the same embedder, as the registry wires it."""
    settings = make_settings()
    embedder = offline_providers.embedder
    chat = ExtractiveChatModel(settings.local, embedder=extractive_embedder(embedder))
    providers = dataclasses.replace(offline_providers, chat=chat)
    async with build_services(settings, providers=providers, store=guide_store) as svc:
        await svc.ingestor.ingest_paths(TENANT, [GUIDE], root=GUIDE)
        for name, make in CORPUS.items():
            await svc.ingestor.ingest_bytes(TENANT, name, make())
        yield svc


class TestAnswerPairs:
    def test_the_fixture_is_paraphrased_and_large_enough(self) -> None:
        """At least 40 pairs, both kinds, every field present, no question repeated."""
        pairs = load_pairs()
        assert len(pairs) >= 40
        assert {p["kind"] for p in pairs} == {"guide", "corpus"}
        assert all(p["question"].strip() and p["expected_source"] for p in pairs)
        assert len({p["question"] for p in pairs}) == len(pairs)

    async def test_the_expected_source_is_cited_for_90_percent(self, pairs_services: Services) -> None:
        """The offline answer cites the expected document for at least 90% of the paraphrased questions."""
        pairs = load_pairs()
        caller = Caller(tenant=TENANT, subject="key:pairs")
        misses: list[tuple[str, str, list[str]]] = []
        first = cited_total = 0
        for pair in pairs:
            chat = pairs_services.chat_service
            started = await chat.start(caller, Ask(pair["question"]))
            answer = await chat.collect(caller, started.message_id)
            cited = cited_sources(answer.text, {s.n: s.source for s in answer.sources})
            first += bool(cited) and cited[0] == pair["expected_source"]
            cited_total += len(cited)
            if pair["expected_source"] not in cited:
                misses.append((pair["question"], pair["expected_source"], cited))
        hits = len(pairs) - len(misses)
        log.warning(
            "answer pairs: %d/%d cite the expected source (%.1f%%); first citation right %d; "
            "documents cited per answer %.2f; misses %s",
            hits,
            len(pairs),
            100 * hits / len(pairs),
            first,
            cited_total / len(pairs),
            misses,
        )
        assert hits >= 0.9 * len(pairs), misses


class TestSourcesPerDocument:
    async def test_sources_name_each_document_page_once(self, pairs_services: Services) -> None:
        """Every answer's sources hold each (document, page) once, numbered 1.. in order."""
        caller = Caller(tenant=TENANT, subject="key:pairs")
        chat = pairs_services.chat_service
        for question in ("How do I stop an answer over websocket?", "How do I upload documents?"):
            answer = await chat.collect(caller, (await chat.start(caller, Ask(question))).message_id)
            keys = [(s.doc_id, s.page_start) for s in answer.sources]
            assert len(keys) == len(set(keys)), keys
            assert [s.n for s in answer.sources] == list(range(1, len(keys) + 1))

    async def test_the_cited_source_carries_the_quoted_sentences_page(self, pairs_services: Services) -> None:
        """A fact on page 3 of the PDF and on slide 2 of the deck is cited with that page."""
        caller = Caller(tenant=TENANT, subject="key:pairs")
        chat = pairs_services.chat_service
        for question, name in (
            ("In which month do the herons fly south to the Camargue?", "report.pdf"),
            ("By what percentage did the glacier unit's income grow?", "deck.pptx"),
        ):
            answer = await chat.collect(caller, (await chat.start(caller, Ask(question))).message_id)
            fact, page = documents.FACTS[name]
            by_n = {s.n: s for s in answer.sources}
            cited = [by_n[int(n)] for n in _CITATION.findall(answer.text)]
            assert fact.rstrip(".") in answer.text
            assert cited[0].source == name
            assert cited[0].page_start == page
