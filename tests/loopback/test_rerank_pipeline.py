"""Reranking in a full answer: the pipeline with the real cohere SDK's reranker against the fake Cohere.

The fake ranks passages by a hashed bag-of-words cosine (tests/fakes/cohere_api.rerank), an order that
differs from hybrid retrieval's, so the sources event shows whose order won. A failing or slow reranker
falls back to the retrieval order with a log line: the answer still completes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatbot.events import ChatEvent, DoneEvent, Source, SourcesEvent
from chatbot.providers.cohere_models import CohereReranker, build_cohere_client
from chatbot.providers.registry import Providers
from chatbot.rag.pipeline import AnswerRequest
from chatbot.settings import CohereSettings
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.fakes import FakeUpstream
from tests.fakes.cohere_api import rerank as fake_rerank
from tests.fakes.scripting import Fault

QUESTION = "How do I stop an answer that is still streaming?"
TOP_K = 4
CANDIDATES = 12


async def answer(offline: Providers, store: VectorStore, reranker: CohereReranker | None) -> list[ChatEvent]:
    settings = make_settings(
        retrieval={"top_k": TOP_K, "rerank_candidates": CANDIDATES}, deadlines={"retrieve": 1.0}
    )
    providers = Providers(
        embedder=offline.embedder, sparse=offline.sparse, chat=offline.chat, reranker=reranker
    )
    async with build_services(settings, providers=providers, store=store) as services:
        request = AnswerRequest(tenant="public", question=QUESTION, message_id="msg_rerank")
        async with contextlib.aclosing(services.pipeline.stream_answer(request)) as events:
            return [event async for event in events]


def sources_of(events: list[ChatEvent]) -> tuple[Source, ...]:
    found = [e for e in events if isinstance(e, SourcesEvent)]
    assert len(found) == 1
    return found[0].sources


@pytest.fixture
async def reranker(cohere_settings: CohereSettings) -> AsyncIterator[CohereReranker]:
    client = build_cohere_client(cohere_settings)
    async with client:
        yield CohereReranker(client, cohere_settings)


class TestRerankedAnswer:
    async def test_sources_come_in_the_rerankers_order(
        self,
        offline_providers: Providers,
        guide_store: VectorStore,
        reranker: CohereReranker,
        fake_cohere: FakeUpstream,
    ) -> None:
        """The pipeline sends the hybrid candidates to /v2/rerank and the sources event follows its order."""
        plain = sources_of(await answer(offline_providers, guide_store, None))
        events = await answer(offline_providers, guide_store, reranker)
        assert isinstance(events[-1], DoneEvent)
        assert "rerank" in events[-1].timings
        [body] = fake_rerank_requests(fake_cohere)
        assert body["query"] == QUESTION
        assert len(body["documents"]) == CANDIDATES
        assert all(any(d in s.text for s in plain) for d in body["documents"][:TOP_K])
        expected = fake_rerank(body)["results"][:TOP_K]
        sources = sources_of(events)  # grouped per document (rag/grouping.py): a source holds its chunks
        ranked = [body["documents"][r["index"]] for r in expected]
        assert all(any(d in s.text for s in sources) for d in ranked)
        assert ranked[0] in sources[0].text
        assert sources[0].score == pytest.approx(expected[0]["relevance_score"])
        assert [s.n for s in sources] == list(range(1, len(sources) + 1))
        assert [s.text for s in sources] != [s.text for s in plain]  # the reranker changed the order


class TestRerankFailure:
    @pytest.mark.parametrize(
        "fault",
        [Fault.http_status(500), Fault.http_status(429), Fault.slow_headers(3.0)],
        ids=["500", "429", "slow"],
    )
    async def test_falls_back_to_the_retrieval_order(
        self,
        offline_providers: Providers,
        guide_store: VectorStore,
        reranker: CohereReranker,
        fake_cohere: FakeUpstream,
        caplog: pytest.LogCaptureFixture,
        fault: Fault,
    ) -> None:
        """A failed or too slow rerank is logged and the answer completes with the un-reranked sources."""
        plain = sources_of(await answer(offline_providers, guide_store, None))
        fake_cohere.inject(fault)
        with caplog.at_level(logging.WARNING, logger="chatbot.rag.pipeline"):
            events = await answer(offline_providers, guide_store, reranker)
        assert isinstance(events[-1], DoneEvent)
        assert [s.text for s in sources_of(events)] == [s.text for s in plain]
        assert len(fake_rerank_requests(fake_cohere)) == 1
        assert any("rerank failed" in r.getMessage() for r in caplog.records)


def fake_rerank_requests(fake: FakeUpstream) -> list[dict[str, Any]]:
    return fake.requests_to("/v2/rerank")
