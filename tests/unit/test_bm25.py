"""BM25 sparse embedder: analysis, hashing, document and query values (as fastembed's Qdrant/bm25)."""

from __future__ import annotations

import asyncio
import math

import pytest

from chatbot.providers.base import SparseEmbedder, SparseVector
from chatbot.providers.local_models import (
    BM25SparseEmbedder,
    TermAnalyzer,
    bm25_idf,
    load_stopwords,
    term_id,
)
from chatbot.stores.qdrant import statistics


@pytest.fixture(scope="module")
def analyzer() -> TermAnalyzer:
    return TermAnalyzer()


@pytest.fixture(scope="module")
def bm25() -> BM25SparseEmbedder:
    return BM25SparseEmbedder()


def as_dict(vector: SparseVector) -> dict[int, float]:
    return dict(zip(vector.indices, vector.values, strict=True))


class TestStopwords:
    def test_ships_nltk_english_list(self) -> None:
        """The shipped list is NLTK's 179 English stopwords."""
        words = load_stopwords()
        assert len(words) == 179
        assert {"the", "and", "of", "you're", "wouldn't", "ourselves"} <= words

    def test_stopwords_dropped(self, analyzer: TermAnalyzer) -> None:
        """Stopwords never become terms, whatever their case."""
        assert analyzer.terms("The AND of Is it") == []


class TestAnalysis:
    def test_lowercases_and_splits_on_word_characters(self, analyzer: TermAnalyzer) -> None:
        """Tokens are lowercased runs of word characters; punctuation separates them."""
        tokens = analyzer.tokens("Hello, World! foo-bar x_y 3.14")
        assert tokens == ["hello", "world", "foo", "bar", "x_y", "3", "14"]

    def test_snowball_stemming(self, analyzer: TermAnalyzer) -> None:
        """Inflections share a Snowball stem."""
        assert analyzer.terms("running runs") == ["run", "run"]
        assert analyzer.terms("websockets websocket") == ["websocket", "websocket"]
        assert analyzer.terms("connection connected connecting") == ["connect"] * 3

    def test_contraction_pieces_are_stopwords(self, analyzer: TermAnalyzer) -> None:
        """ "don't" splits into "don" and "t", both stopwords, as in fastembed."""
        assert analyzer.terms("don't stop") == ["stop"]

    def test_lone_underscore_dropped(self, analyzer: TermAnalyzer) -> None:
        """A lone "_" is punctuation (fastembed drops it); inside a word it stays."""
        assert analyzer.terms("a _ b_c") == ["b_c"]

    def test_overlong_tokens_dropped(self, analyzer: TermAnalyzer) -> None:
        """Tokens over 40 characters (hashes, base64) are dropped."""
        assert analyzer.terms("x" * 41 + " word") == ["word"]

    def test_non_ascii_words_kept(self, analyzer: TermAnalyzer) -> None:
        """Letters of any script are word characters."""
        assert analyzer.terms("Café 東京") == ["café", "東京"]


class TestHashing:
    def test_known_values(self) -> None:
        """Term ids are abs(signed murmur3 32-bit), pinned so stored vectors stay valid across releases."""
        assert term_id("websocket") == 2018163606  # mmh3.hash gives -2018163606
        assert term_id("run") == 243905464
        assert term_id("stream") == 771713658
        assert term_id("東京") == 1765863102

    def test_stable_and_in_u32_range(self) -> None:
        """The same term always maps to the same non-negative index that fits Qdrant's u32."""
        for word in ("a", "stream", "東京", "x_y"):
            assert term_id(word) == term_id(word)
            assert 0 <= term_id(word) <= 2**31


class TestValues:
    def test_query_values_are_one_per_unique_term(self, bm25: BM25SparseEmbedder) -> None:
        """A query vector has 1.0 per unique term, whatever the repeats."""
        vector = bm25.query_vector("stream streaming streams websocket")
        assert as_dict(vector) == {term_id("stream"): 1.0, term_id("websocket"): 1.0}

    def test_document_values_follow_bm25_saturation(self, bm25: BM25SparseEmbedder) -> None:
        """Document values are tf*(k+1)/(tf + k*(1-b+b*len/avgdl)) with k=1.2, b=0.75, avgdl=256."""
        vector = as_dict(bm25.document_vector("stream stream websocket"))
        norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 256)
        assert vector[term_id("stream")] == pytest.approx(2 * 2.2 / (2 + norm))
        assert vector[term_id("websocket")] == pytest.approx(1 * 2.2 / (1 + norm))

    def test_longer_documents_weigh_a_term_less(self, bm25: BM25SparseEmbedder) -> None:
        """Length normalisation: the same single occurrence is worth less in a longer document."""
        short = as_dict(bm25.document_vector("websocket"))[term_id("websocket")]
        long = as_dict(bm25.document_vector("websocket " + "filler " * 300))[term_id("websocket")]
        assert long < short

    def test_indices_sorted_and_unique(self, bm25: BM25SparseEmbedder) -> None:
        """Indices come sorted with no repeats (Qdrant refuses duplicates)."""
        for vector in (bm25.document_vector("b a c a b"), bm25.query_vector("b a c a b")):
            assert vector.indices == sorted(set(vector.indices))

    def test_empty_text_gives_empty_vector(self, bm25: BM25SparseEmbedder) -> None:
        """Nothing but stopwords and punctuation yields an empty sparse vector."""
        assert bm25.document_vector("the, of!") == SparseVector(indices=[], values=[])

    def test_idf_formula(self) -> None:
        """bm25_idf is Qdrant's ln(1 + (N - n + 0.5) / (n + 0.5)), positive even for a term everywhere."""
        assert bm25_idf(10, 2) == pytest.approx(math.log(1 + 8.5 / 2.5))
        assert bm25_idf(5, 5) > 0

    def test_the_stores_idf_is_the_same_formula(self) -> None:
        """The stores' per-tenant IDF (stores/qdrant/statistics.idf) and bm25_idf agree, and weigh scales
        each query value by its term's IDF."""
        for total, df in ((10, 2), (5, 5), (0, 0), (1000, 1)):
            assert statistics.idf(total, df) == bm25_idf(total, df)
        weighted = statistics.weigh(SparseVector([3, 7], [1.0, 2.0]), [0.5, 1.5])
        assert weighted == SparseVector([3, 7], [0.5, 3.0])


class TestEmbedSparse:
    def test_satisfies_protocol(self, bm25: BM25SparseEmbedder) -> None:
        """BM25SparseEmbedder is a SparseEmbedder named "bm25"."""
        assert isinstance(bm25, SparseEmbedder)
        assert bm25.name == "bm25"

    async def test_kind_selects_values_and_order_is_kept(self, bm25: BM25SparseEmbedder) -> None:
        """embed_sparse returns vectors in input order: tf weights for documents, ones for queries."""
        texts = ["websocket stream", "resume answer answer"]
        documents = await bm25.embed_sparse(texts, "document")
        queries = await bm25.embed_sparse(texts, "query")
        assert documents == [bm25.document_vector(t) for t in texts]
        assert queries == [bm25.query_vector(t) for t in texts]

    async def test_large_batch_runs_off_the_loop_with_same_result(self, bm25: BM25SparseEmbedder) -> None:
        """A batch past the inline limit goes to a thread and gives the same vectors as inline."""
        texts = [f"chunk {i} about streaming answers over websockets" for i in range(50)]
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        try:
            vectors = await bm25.embed_sparse(texts, "document")
        finally:
            task.cancel()
        assert vectors == bm25.vectors(texts, "document")
        assert ticks > 0
