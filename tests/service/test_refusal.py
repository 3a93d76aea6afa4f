"""Honest refusal in the pipeline: every search mode, with a reranker, with a language model (it is told
there is no relevant source), an uncalibrated embedder, an empty tenant (offline models, the user guide)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Literal

import pytest

from chatbot.eval.refusal import Probe, probe_questions
from chatbot.events import ChatEvent, SourcesEvent, TokenEvent
from chatbot.providers.base import ChatChunk, ChatRequest, EmbedKind, RankedPassage
from chatbot.providers.extractive import NOT_FOUND
from chatbot.providers.registry import Providers
from chatbot.rag.confidence import CALIBRATIONS, ConfidenceCheck
from chatbot.rag.pipeline import AnswerRequest
from chatbot.settings import RetrievalSettings
from chatbot.stores.base import QueryVectors, VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings

OFF_TOPIC = "What is the capital city of Australia?"
IN_SCOPE = "How do I stop an answer?"


class RecordingChat:
    """A ChatModel that records its requests and answers one fixed sentence."""

    name = "recording"
    max_context_tokens = 100_000

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.requests.append(request)
        yield ChatChunk(delta="The documents do not cover this.")
        yield ChatChunk(finish_reason="stop")


class ReversingReranker:
    """A Reranker that puts the search order upside down (scores that say nothing about relevance)."""

    name = "reversing"

    async def rerank(self, query: str, passages: Sequence[str], top_n: int) -> list[RankedPassage]:
        order = list(reversed(range(len(passages))))[:top_n]
        return [RankedPassage(index=i, score=0.99) for i in order]


class RenamedEmbedder:
    """The offline embedder under a name no calibration knows (as an API embedder would be)."""

    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(self, inner: Providers) -> None:
        self.inner = inner.embedder
        self.name = "fake/uncalibrated"
        self.dimensions = inner.embedder.dimensions

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        return await self.inner.embed(texts, kind)


async def ask(
    providers: Providers, store: VectorStore, question: str, tenant: str = "public", **retrieval: object
) -> list[ChatEvent]:
    settings = make_settings(retrieval={"refusal_threshold": 0.3, **retrieval})
    async with build_services(settings, providers=providers, store=store) as services:
        request = AnswerRequest(tenant=tenant, question=question, message_id="m1", history=())
        async with contextlib.aclosing(services.pipeline.stream_answer(request)) as events:
            return [e async for e in events]


def sources_of(events: list[ChatEvent]) -> SourcesEvent:
    [sources] = [e for e in events if isinstance(e, SourcesEvent)]
    return sources


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.delta for e in events if isinstance(e, TokenEvent))


class TestRefusal:
    @pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
    async def test_every_search_mode(
        self, offline_providers: Providers, guide_store: VectorStore, mode: str
    ) -> None:
        """Off-topic: no sources, flagged, the not-found answer; in scope: sources and citations."""
        refused = await ask(offline_providers, guide_store, OFF_TOPIC, mode=mode)
        answered = await ask(offline_providers, guide_store, IN_SCOPE, mode=mode)
        assert sources_of(refused) == SourcesEvent(sources=(), no_relevant_sources=True)
        assert text_of(refused) == NOT_FOUND
        assert sources_of(answered).sources
        assert not sources_of(answered).no_relevant_sources
        assert "[1]" in text_of(answered)

    async def test_reranker_scores_do_not_decide(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """A reranker scoring everything 0.99 does not lift an off-topic question over the threshold."""
        reranked = Providers(
            offline_providers.embedder, offline_providers.sparse, offline_providers.chat, ReversingReranker()
        )
        assert sources_of(await ask(reranked, guide_store, OFF_TOPIC)).no_relevant_sources
        assert sources_of(await ask(reranked, guide_store, IN_SCOPE)).sources

    async def test_a_language_model_is_told(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """The model gets no passage and a prompt saying no relevant source was found."""
        chat = RecordingChat()
        providers = Providers(offline_providers.embedder, offline_providers.sparse, chat, None)
        events = await ask(providers, guide_store, OFF_TOPIC)
        assert sources_of(events).no_relevant_sources
        [request] = chat.requests
        assert request.passages == []
        assert "No relevant source was found" in request.messages[0].content
        assert "cite nothing" in request.messages[0].content

    async def test_uncalibrated_embedder_never_refuses(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """Without a threshold setting, an embedder missing from the calibration table passes every question."""
        embedder = RenamedEmbedder(offline_providers)
        check = ConfidenceCheck(store=guide_store, embedder=embedder, settings=RetrievalSettings())
        assert check.threshold is None
        assert await check.passes("public", [], OFF_TOPIC)
        calibrated = ConfidenceCheck(
            store=guide_store, embedder=embedder, settings=RetrievalSettings(refusal_threshold=0.3)
        )
        assert not await calibrated.passes("public", [], OFF_TOPIC)  # its question embedded for the check

    async def test_an_empty_tenant_has_no_relevant_sources(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """A tenant with no documents: no sources, flagged, the not-found answer."""
        events = await ask(offline_providers, guide_store, IN_SCOPE, tenant="nobody-here")
        assert sources_of(events) == SourcesEvent(sources=(), no_relevant_sources=True)
        assert text_of(events) == NOT_FOUND

    async def test_the_offline_default_refuses_off_topic(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """With no setting, the offline embedder's calibrated threshold declines off-topic and answers the guide."""
        async with build_services(
            make_settings(), providers=offline_providers, store=guide_store
        ) as services:
            assert (
                services.pipeline.confidence.threshold
                == CALIBRATIONS[offline_providers.embedder.name].threshold
            )
            for question, refused in ((OFF_TOPIC, True), (IN_SCOPE, False)):
                request = AnswerRequest(tenant="public", question=question, message_id="m1", history=())
                async with contextlib.aclosing(services.pipeline.stream_answer(request)) as events:
                    got = [e async for e in events]
                assert sources_of(got).no_relevant_sources is refused, question


class TestSignals:
    async def test_the_gap_is_over_the_20th_best_cosine(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """The gap is the top cosine minus the 20th best of one dense search; the top chunk is the best hit."""
        check = ConfidenceCheck(
            store=guide_store, embedder=offline_providers.embedder, settings=RetrievalSettings()
        )
        signals = await check.signals("public", [], IN_SCOPE, gap_rank=20)
        [vector] = await offline_providers.embedder.embed([IN_SCOPE], "query")
        hits = await guide_store.search("public", [QueryVectors(dense=vector)], mode="dense", limit=20)
        assert signals.top is not None
        assert signals.score == hits[0].score == signals.top.score
        assert signals.gap == pytest.approx(hits[0].score - hits[19].score)
        assert await check.top_similarity("public", [], IN_SCOPE) == signals.score

    async def test_a_small_tenant_is_judged_on_the_cosine_alone(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """A tenant with fewer chunks than the gap rank has no gap: a match above the threshold is answered."""
        async with build_services(
            make_settings(), providers=offline_providers, store=guide_store
        ) as services:
            await services.ingestor.ingest_bytes(
                "small-tenant",
                "mill.md",
                b"# Mill\n\nThe windmill grinds barley every morning with reed sails.\n",
            )
            check = services.pipeline.confidence
            signals = await check.signals("small-tenant", [], "What does the windmill grind?")
            assert check.calibration is not None
            assert check.calibration.ceiling is not None
            assert signals.gap is None
            assert signals.score is not None
            assert check.calibration.threshold <= signals.score
            assert await check.passes("small-tenant", [], "What does the windmill grind?")

    async def test_probes_for_the_calibration(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> None:
        """probe_questions gives the check's cosine and gap and the term coverage; an empty tenant probes 0."""
        assert offline_providers.sparse is not None
        check = ConfidenceCheck(
            store=guide_store, embedder=offline_providers.embedder, settings=RetrievalSettings()
        )
        [probe] = await probe_questions(check, offline_providers.sparse, "public", [IN_SCOPE], gap_rank=20)
        signals = await check.signals("public", [], IN_SCOPE, gap_rank=20)
        assert (probe.cosine, probe.gap) == (signals.score, signals.gap)
        assert 0 < probe.coverage <= 1
        assert await probe_questions(
            check, offline_providers.sparse, "nobody-here", [IN_SCOPE], gap_rank=20
        ) == [Probe(0.0, None, 0.0)]
