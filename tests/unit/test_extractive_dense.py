"""Sentences scored by meaning: the blend, the LRU of sentence vectors, its budget, and the registry wiring."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Literal

import pytest

from chatbot.errors import UpstreamError
from chatbot.providers.base import ChatRequest, Embedder, EmbedKind, Passage
from chatbot.providers.extractive import ExtractiveChatModel, select_sentences
from chatbot.providers.extractive.select import find_candidates, select
from chatbot.providers.extractive.vectors import SentenceVectors
from chatbot.providers.local_models import TermAnalyzer
from chatbot.providers.registry import build_providers, extractive_embedder
from chatbot.settings import LocalModelSettings
from tests.conftest import make_settings

# Each concept is one axis: a text's vector counts the words of each concept it holds.
CONCEPTS = (
    {"eat", "eats", "feed", "hay", "food", "oats"},
    {"sleep", "sleeps", "stable", "straw", "night"},
    {"gallop", "run", "runs", "fast", "speed"},
    {"bananas", "cost", "price", "pay"},
)


class ConceptEmbedder:
    """A deterministic Embedder: one dimension per concept word set plus one for everything else."""

    dimensions = len(CONCEPTS) + 1
    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(self, name: str = "local/concepts", *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.calls: list[tuple[list[str], EmbedKind]] = []

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        self.calls.append((list(texts), kind))
        if self.fail:
            raise UpstreamError("embedder down", provider=self.name)
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        words = [w.strip(".,?!").lower() for w in text.split()]
        vector = [float(sum(w in concept for w in words)) for concept in CONCEPTS]
        return [*vector, 0.1]

    @property
    def embedded(self) -> list[str]:
        return [text for texts, _ in self.calls for text in texts]


HORSES = (
    "Horses are large animals that need space. "
    "Give them hay and oats twice a day. "
    "Horses sleep standing up in the stable at night."
)


@pytest.fixture(scope="module")
def analyzer() -> TermAnalyzer:
    return TermAnalyzer()


def request(question: str, *texts: str, query_vector: list[float] | None = None) -> ChatRequest:
    passages = [Passage(n=i + 1, text=t) for i, t in enumerate(texts)]
    return ChatRequest(messages=[], question=question, passages=passages, query_vector=query_vector)


class TestBlend:
    async def test_a_differently_worded_answer_is_found_by_meaning(self, analyzer: TermAnalyzer) -> None:
        """'What do horses eat?' finds 'Give them hay and oats', which shares no term with it."""
        passages = [Passage(1, HORSES)]
        lexical = select_sentences("What do horses eat?", passages, 1, analyzer)
        assert lexical[0].text != "Give them hay and oats twice a day."
        vectors = SentenceVectors(ConceptEmbedder())
        found = find_candidates(passages, analyzer)
        dense = await vectors.lookup("What do horses eat?", [c.span.text for c in found.sentences])
        picks = select("What do horses eat?", found, 1, analyzer, dense)
        assert [p.text for p in picks] == ["Give them hay and oats twice a day."]

    async def test_unrelated_question_still_finds_nothing(self, analyzer: TermAnalyzer) -> None:
        """No shared term and no similar meaning: nothing is quoted."""
        passages = [Passage(1, HORSES)]
        found = find_candidates(passages, analyzer)
        dense = await SentenceVectors(ConceptEmbedder()).lookup(
            "What do bananas cost?", [c.span.text for c in found.sentences]
        )
        assert select("What do bananas cost?", found, 4, analyzer, dense) == []

    async def test_same_meaning_in_other_words_is_quoted_once(self, analyzer: TermAnalyzer) -> None:
        """Two sentences with one meaning (vectors nearly equal) and few shared terms: one is kept."""
        passages = [
            Passage(1, "Horses eat hay daily."),
            Passage(2, "Every morning ponies get food and oats."),
        ]
        found = find_candidates(passages, analyzer)
        dense = await SentenceVectors(ConceptEmbedder()).lookup(
            "What food do horses eat?", [c.span.text for c in found.sentences]
        )
        picks = select("What food do horses eat?", found, 4, analyzer, dense)
        assert len(picks) == 1


class TestSentenceVectors:
    async def test_cached_sentences_cost_nothing_the_second_time(self) -> None:
        """A second answer over the same passages embeds only its new question."""
        embedder = ConceptEmbedder()
        vectors = SentenceVectors(embedder)
        await vectors.lookup("What do horses eat?", ["Give them hay.", "They sleep at night."])
        embedder.calls.clear()
        await vectors.lookup("Where do horses sleep?", ["Give them hay.", "They sleep at night."])
        assert embedder.calls == [(["Where do horses sleep?"], "query")]

    async def test_the_retrievers_query_vector_is_reused(self) -> None:
        """With the question's vector given, only sentences are embedded; a wrong-sized one is ignored."""
        embedder = ConceptEmbedder()
        vectors = SentenceVectors(embedder)
        dense = await vectors.lookup("q", ["Give them hay."], query_vector=[1.0, 0.0, 0.0, 0.0, 0.0])
        assert embedder.embedded == ["Give them hay."]
        assert dense.similarity("Give them hay.") == pytest.approx(1 / (1 + 0.01) ** 0.5, abs=1e-6)
        await vectors.lookup("What do horses eat?", ["Give them hay."], query_vector=[1.0, 0.0])
        assert embedder.embedded[-1] == "What do horses eat?"

    async def test_budget_bounds_new_sentences_per_answer(self) -> None:
        """At most `budget` new sentences are embedded per answer, the first ones given; others get none."""
        embedder = ConceptEmbedder()
        vectors = SentenceVectors(embedder, budget=2)
        dense = await vectors.lookup("q", ["a one.", "b two.", "c three.", "a one."])
        assert dense.similarity("a one.") is not None
        assert dense.similarity("b two.") is not None
        assert dense.similarity("c three.") is None
        assert vectors.embedded == 2

    async def test_a_saturated_embedder_embeds_no_new_sentence(self) -> None:
        """While questions wait for the embedder, new sentences get no vector; remembered ones keep theirs."""
        embedder = ConceptEmbedder()
        vectors = SentenceVectors(embedder, budget=8)
        await vectors.lookup("q", ["a one."])
        embedder.saturated = True  # type: ignore[attr-defined]  # what LocalEmbedder says under load
        dense = await vectors.lookup("q", ["a one.", "b two."])
        assert dense.similarity("a one.") is not None
        assert dense.similarity("b two.") is None
        assert vectors.embedded == 1
        embedder.saturated = False  # type: ignore[attr-defined]
        assert (await vectors.lookup("q", ["b two."])).similarity("b two.") is not None

    async def test_capacity_evicts_the_least_recently_used(self) -> None:
        """The LRU never holds more than its capacity; a recently used vector survives."""
        vectors = SentenceVectors(ConceptEmbedder(), capacity=3)
        await vectors.lookup("q", ["one.", "two."])  # q, one, two
        await vectors.lookup("q", ["one."])  # touches q and one
        await vectors.lookup("q", ["three."])  # evicts two
        assert len(vectors) == 3
        before = vectors.embedded
        await vectors.lookup("q", ["one.", "three."])
        assert vectors.embedded == before

    async def test_a_zero_vector_does_not_divide_by_zero(self) -> None:
        """An all-zero question vector gives similarity 0, not NaN."""
        vectors = SentenceVectors(ConceptEmbedder())
        dense = await vectors.lookup("q", ["Give them hay."], query_vector=[0.0, 0.0, 0.0, 0.0, 0.0])
        assert dense.similarity("Give them hay.") == 0.0


class TestModel:
    async def test_answers_by_meaning_with_an_embedder(self) -> None:
        """The model with an embedder quotes the differently worded sentence, citing it."""
        model = ExtractiveChatModel(LocalModelSettings(extractive_sentences=1), embedder=ConceptEmbedder())
        text = await model.answer(request("What do horses eat?", HORSES))
        assert "Give them hay and oats twice a day [1]." in text

    async def test_a_failing_embedder_falls_back_to_terms(self) -> None:
        """An embedder error does not fail the answer: it is scored lexically."""
        model = ExtractiveChatModel(LocalModelSettings(), embedder=ConceptEmbedder(fail=True))
        text = await model.answer(request("Where do horses sleep?", HORSES))
        assert "Horses sleep standing up in the stable at night [1]." in text

    async def test_no_passages_embed_nothing(self) -> None:
        """Without sentences to score the embedder is not called."""
        embedder = ConceptEmbedder()
        model = ExtractiveChatModel(LocalModelSettings(), embedder=embedder)
        await model.answer(request("What do horses eat?"))
        assert embedder.calls == []


class TestWiring:
    def test_only_the_offline_embedder_is_used(self) -> None:
        """The local embedder scores sentences; an API embedder would cost a call per answer: not used."""
        local: Embedder = ConceptEmbedder("local/all-MiniLM-L6-v2")
        api: Embedder = ConceptEmbedder("openai/text-embedding-3-small")
        assert extractive_embedder(local) is local
        assert extractive_embedder(api) is None

    async def test_the_registry_gives_the_extractive_model_the_embedder_in_use(self) -> None:
        """Offline settings: the extractive chat model holds the same embedder the retriever uses."""
        async with AsyncExitStack() as stack:
            providers = build_providers(make_settings(), stack)
            assert isinstance(providers.chat, ExtractiveChatModel)
            assert providers.chat.vectors is not None
            assert providers.chat.vectors.embedder is providers.embedder
