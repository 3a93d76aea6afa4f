"""The evaluation harness's pure parts: metrics against hand-computed values, BEIR readers, the adapter."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytest

from chatbot.errors import ConfigError
from chatbot.eval.batching import BatchingEmbedder
from chatbot.eval.beir import (
    CorpusDoc,
    corpus_id,
    document_bytes,
    document_source,
    read_corpus,
    read_qrels,
    read_queries,
)
from chatbot.eval.harness import eval_settings, parse_modes
from chatbot.eval.metrics import (
    SPLITS,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    rank_by_score,
    recall_at_k,
    score_run,
    split_of,
)
from chatbot.ingest.loaders import load_document
from chatbot.providers.base import EmbedKind
from chatbot.settings import Settings

LOG2_3 = math.log2(3)
LOG2_5 = math.log2(5)


class TestNdcg:
    def test_binary_relevance_perfect_and_shifted(self) -> None:
        """One relevant document: 1 at rank 1, 1/log2(3) at rank 2, 0 beyond k."""
        qrels = {"a": 1}
        assert ndcg_at_k(["a", "x"], qrels) == 1.0
        assert ndcg_at_k(["x", "a"], qrels) == pytest.approx(1 / LOG2_3)
        assert ndcg_at_k(["x1", "x2", "a"], qrels, k=2) == 0.0

    def test_graded_relevance_uses_linear_gains(self) -> None:
        """Grades 2 and 1 in the wrong order: (1 + 2/log2 3) / (2 + 1/log2 3), as pytrec_eval computes."""
        qrels = {"a": 2, "b": 1}
        assert ndcg_at_k(["b", "a"], qrels) == pytest.approx((1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))
        assert ndcg_at_k(["a", "b"], qrels) == 1.0

    def test_equal_grades_in_any_order_are_ideal(self) -> None:
        """Tied grades: every order of the equally relevant documents is ideal."""
        qrels = {"a": 1, "b": 1}
        assert ndcg_at_k(["a", "b"], qrels) == ndcg_at_k(["b", "a"], qrels) == 1.0

    def test_fewer_than_k_results(self) -> None:
        """A short list is scored as it is: the ideal counts every relevant document up to k."""
        qrels = {"a": 1, "b": 1, "c": 1}
        ideal = 1 + 1 / LOG2_3 + 1 / 2
        assert ndcg_at_k(["a"], qrels) == pytest.approx(1 / ideal)
        assert ndcg_at_k([], qrels) == 0.0

    def test_missing_and_zero_qrels(self) -> None:
        """No relevant document (no qrels, or only grade 0) scores 0; unjudged documents count as grade 0."""
        assert ndcg_at_k(["a"], {}) == 0.0
        assert ndcg_at_k(["a"], {"a": 0}) == 0.0
        assert ndcg_at_k(["unjudged", "a"], {"a": 1, "b": 0}) == pytest.approx(1 / LOG2_3)

    def test_repeated_document_counts_once_at_its_best_rank(self) -> None:
        """Two chunks of one document: the document sits at its first rank and the second is dropped."""
        assert ndcg_at_k(["x", "x", "a"], {"a": 1}) == pytest.approx(1 / LOG2_3)


class TestRecallAndMrr:
    def test_recall_counts_relevant_in_top_k(self) -> None:
        """Recall@k is the share of grade > 0 documents in the top k."""
        qrels = {"a": 1, "b": 2, "c": 0}
        assert recall_at_k(["a", "c", "x"], qrels) == 0.5
        assert recall_at_k(["x", "a", "b"], qrels, k=2) == 0.5
        assert recall_at_k(["b", "a"], qrels) == 1.0
        assert recall_at_k(["a"], {}) == 0.0

    def test_mrr_is_first_relevant_rank(self) -> None:
        """MRR@k is 1/rank of the first relevant document, 0 past k."""
        qrels = {"a": 1, "b": 1}
        assert mrr_at_k(["x", "b", "a"], qrels) == 0.5
        assert mrr_at_k(["x", "y", "z", "a"], qrels, k=3) == 0.0
        assert mrr_at_k(["x", "x", "a"], qrels) == 0.5
        assert mrr_at_k(["a"], {"a": 0}) == 0.0


class TestRanking:
    def test_best_score_per_document_and_ties_by_id(self) -> None:
        """Each document ranks by its best chunk; equal scores (RRF) fall back to the id, lowest first."""
        hits = [("b", 0.5), ("a", 0.5), ("c", 0.9), ("b", 0.95), ("a", 0.1)]
        assert rank_by_score(hits) == ["b", "c", "a"]
        assert rank_by_score([("z", 1.0), ("y", 1.0), ("x", 1.0)]) == ["x", "y", "z"]

    def test_percentile_is_nearest_rank(self) -> None:
        """p50 of 1..10 is 5, p99 is 10, one value is every percentile, none is 0."""
        values = [float(v) for v in range(10, 0, -1)]
        assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (5.0, 10.0, 10.0)
        assert percentile([7.0], 1) == 7.0
        assert percentile([], 50) == 0.0


class TestScoreRun:
    def test_means_over_judged_queries_only(self) -> None:
        """Queries without a relevant document are left out of every mean."""
        qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
        run = {"q1": ["a"], "q2": ["x", "b"], "q3": ["c"], "q4": ["d"]}
        result = score_run("hybrid", run, qrels, [1.0, 2.0, 3.0, 4.0])
        assert result.queries == 2
        assert result.ndcg_at_10 == pytest.approx((1 + 1 / LOG2_3) / 2)
        assert result.mrr_at_10 == pytest.approx(0.75)
        assert result.recall_at_100 == 1.0
        assert (result.p50_ms, result.p99_ms) == (2.0, 4.0)

    def test_no_judged_query_is_all_zero(self) -> None:
        """A run with nothing to judge reports zeros rather than dividing by zero."""
        result = score_run("dense", {"q": ["a"]}, {}, [])
        metrics = (result.ndcg_at_10, result.recall_at_100, result.mrr_at_10, result.queries)
        assert metrics == (0.0, 0.0, 0.0, 0)


class TestSplits:
    def test_split_is_a_fixed_function_of_the_id_about_half_each(self) -> None:
        """Every id lands in dev or test by its hash alone: same answer every time, ~50/50 over many ids."""
        ids = [str(n) for n in range(1000)]
        first = [split_of(q) for q in ids]
        assert first == [split_of(q) for q in ids]
        assert set(first) == set(SPLITS)
        assert 400 < first.count("dev") < 600
        assert split_of("2") == "dev"
        assert split_of("0") == "test"

    def test_hostile_ids_still_split(self) -> None:
        """Empty, huge and non-ASCII ids (from a stranger's queries file) get a split without error."""
        for qid in ("", "x" * 100_000, "\u00e9\U0001f600", "\x00\n\t"):
            assert split_of(qid) in SPLITS

    def test_run_scored_per_split_adds_up(self) -> None:
        """Per-split figures are the same metrics over each half; their query counts sum to the whole."""
        qrels = {str(n): {f"d{n}": 1} for n in range(40)}
        run = {q: ([f"d{q}"] if int(q) % 2 else ["x", f"d{q}"]) for q in qrels}
        latencies = {q: float(n) for n, q in enumerate(run)}
        result = score_run("sparse", run, qrels, latencies, splits=True)
        assert set(result.splits) == set(SPLITS)
        parts = result.splits.values()
        assert sum(r.queries for r in parts) == result.queries == 40
        weighted = sum(r.mrr_at_10 * r.queries for r in parts) / result.queries
        assert weighted == pytest.approx(result.mrr_at_10)
        dev = [q for q in run if split_of(q) == "dev"]
        assert result.splits["dev"].mrr_at_10 == pytest.approx(
            sum(1.0 if int(q) % 2 else 0.5 for q in dev) / len(dev)
        )
        assert set(result.to_dict()["splits"]) == set(SPLITS)

    def test_splits_need_latencies_by_query(self) -> None:
        """A latency list cannot be split by query: asking for splits with one is a programming error."""
        with pytest.raises(TypeError):
            score_run("dense", {"q": ["a"]}, {"q": {"a": 1}}, [1.0], splits=True)


class TestBeirFiles:
    def test_reads_corpus_queries_and_graded_qrels(self, tmp_path: Path) -> None:
        """The three BEIR files parse into documents, query texts and graded qrels."""
        (tmp_path / "corpus.jsonl").write_text(
            '{"_id": "d1", "title": "T", "text": "Body."}\n\n{"_id": 2, "text": "No title."}\n'
        )
        (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what?"}\n')
        (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\t2\t0\n")
        corpus = read_corpus(tmp_path / "corpus.jsonl")
        assert corpus == [CorpusDoc("d1", "T", "Body."), CorpusDoc("2", "", "No title.")]
        assert read_queries(tmp_path / "queries.jsonl") == {"q1": "what?"}
        assert read_qrels(tmp_path / "qrels.tsv") == {"q1": {"d1": 2, "2": 0}}

    def test_qrels_without_header_is_refused(self, tmp_path: Path) -> None:
        """A qrels file without the BEIR header is a ConfigError naming the expected header."""
        (tmp_path / "qrels.tsv").write_text("q1\td1\t1\n")
        with pytest.raises(ConfigError, match="query-id"):
            read_qrels(tmp_path / "qrels.tsv")

    def test_bad_json_line_names_the_line(self, tmp_path: Path) -> None:
        """A broken corpus line is a ConfigError with its line number."""
        (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{nope\n')
        with pytest.raises(ConfigError, match=":2:"):
            read_corpus(tmp_path / "corpus.jsonl")


class TestAdapter:
    def test_document_is_markdown_with_the_title_as_heading(self) -> None:
        """A corpus entry loads as one section headed by its title, under a source that maps to its id."""
        doc = CorpusDoc("4983", "Cell  walls\nof plants", "Plants have walls.")
        parsed = load_document(document_source(doc.doc_id), document_bytes(doc))
        assert parsed.title == "Cell walls of plants"
        sections = [(s.heading_path, s.text) for s in parsed.sections]
        assert sections == [(("Cell walls of plants",), "Plants have walls.")]
        assert corpus_id(document_source("4983")) == "4983"

    def test_scratch_store_keeps_the_deployments_knobs(self) -> None:
        """The eval never writes to the configured store: an in-memory one, with the other store knobs kept."""
        configured = Settings(
            _env_file=None,  # type: ignore[call-arg]
            qdrant={
                "url": "http://qdrant:6333",
                "collection": "documents",
                "memory_index": False,
                "upsert_batch": 64,
            },
            retrieval={"mode": "dense", "fusion": "dbsf"},
        )
        scratch = eval_settings(configured)
        assert (scratch.qdrant.url, scratch.qdrant.path, scratch.qdrant.collection) == (
            None,
            ":memory:",
            "eval",
        )
        assert (scratch.qdrant.memory_index, scratch.qdrant.upsert_batch) == (False, 64)
        assert (scratch.retrieval.mode, scratch.retrieval.fusion) == ("auto", "dbsf")
        assert configured.qdrant.url == "http://qdrant:6333"

    def test_modes_parse_and_rerank_needs_a_reranker(self) -> None:
        """Modes default to every usable one; rerank without a reranker and unknown modes are ConfigErrors."""
        assert parse_modes(None, rerank_available=False) == ["dense", "sparse", "hybrid"]
        assert parse_modes(None, rerank_available=True) == ["dense", "sparse", "hybrid", "rerank"]
        assert parse_modes("hybrid, dense", rerank_available=False) == ["hybrid", "dense"]
        with pytest.raises(ConfigError, match="no reranker runs offline"):
            parse_modes("rerank", rerank_available=False)
        with pytest.raises(ConfigError, match="Unknown mode"):
            parse_modes("bm42", rerank_available=False)


class _CountingEmbedder:
    """Returns [len(text), call number] per text and records each call's texts."""

    name = "counting"
    dimensions = 2
    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        self.calls.append(list(texts))
        await asyncio.sleep(0.01)
        if "boom" in texts:
            raise RuntimeError("boom")
        return [[float(len(t)), float(len(self.calls))] for t in texts]


class TestBatchingEmbedder:
    async def test_concurrent_calls_share_batches_and_get_their_own_vectors(self) -> None:
        """Waiting calls merge into batches of up to max_batch texts; each caller gets its own vectors."""
        inner = _CountingEmbedder()
        batching = BatchingEmbedder(inner, max_batch=4)
        results = await asyncio.gather(
            batching.embed(["a"], "document"),
            batching.embed(["bb", "ccc"], "document"),
            batching.embed(["dddd"], "document"),
            batching.embed(["eeeee", "f"], "document"),
        )
        await batching.aclose()
        assert inner.calls == [["a", "bb", "ccc", "dddd"], ["eeeee", "f"]]
        assert results == [[[1.0, 1.0]], [[2.0, 1.0], [3.0, 1.0]], [[4.0, 1.0]], [[5.0, 2.0], [1.0, 2.0]]]
        assert batching.calls == 2

    async def test_a_failed_batch_fails_only_its_callers(self) -> None:
        """An exception reaches the callers whose texts were in the failed batch; later batches still run."""
        inner = _CountingEmbedder()
        batching = BatchingEmbedder(inner, max_batch=1)
        first, second = await asyncio.gather(
            batching.embed(["boom"], "document"), batching.embed(["ok"], "document"), return_exceptions=True
        )
        await batching.aclose()
        assert isinstance(first, RuntimeError)
        assert second == [[2.0, 2.0]]
