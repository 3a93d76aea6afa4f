"""The evaluation harness end to end on a small invented BEIR-layout data set (real offline models)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from chatbot.__main__ import main
from chatbot.errors import ConfigError
from chatbot.eval.beir import CorpusDoc
from chatbot.eval.harness import EvalMode, eval_command, retriever_for
from chatbot.eval.stored import FINGERPRINT, StoredCollection, fingerprint
from chatbot.events import SourcesEvent
from chatbot.providers.local_models import BM25SparseEmbedder
from chatbot.providers.registry import Providers
from chatbot.rag.grouping import group_by_document
from chatbot.rag.pipeline import AnswerRequest
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings

# Twenty invented documents: every one is about something no other one mentions.
DOCS: dict[str, tuple[str, str]] = {
    "d01": ("Zorblax turbines", "A zorblax turbine turns tidal currents into electricity for harbour towns."),
    "d02": (
        "Quillfeather moss",
        "Quillfeather moss grows only on north-facing basalt cliffs above the tree line.",
    ),
    "d03": (
        "The Vemmick orchestra",
        "The Vemmick orchestra plays every piece on glass harmonicas and bronze gongs.",
    ),
    "d04": (
        "Brindlewick cheese",
        "Brindlewick cheese is aged for nine years in salt caves before it is sold.",
    ),
    "d05": (
        "Tolstrand ferries",
        "Tolstrand ferries cross the frozen fjord on steel runners every winter morning.",
    ),
    "d06": (
        "Ombrevale lanterns",
        "Ombrevale lanterns burn whale-free lamp oil pressed from sunflower seeds.",
    ),
    "d07": ("Krellish grammar", "Krellish grammar puts the verb last and marks every noun for its colour."),
    "d08": (
        "Pandrel beekeeping",
        "Pandrel beekeepers keep their hives in hollow clay towers to cool the bees.",
    ),
    "d09": (
        "Sarnova observatory",
        "The Sarnova observatory tracks comets with a mirror of polished obsidian.",
    ),
    "d10": ("Glimmerfen eels", "Glimmerfen eels glow green when the water in the marsh turns acidic."),
    "d11": ("Hestwick pottery", "Hestwick potters glaze their bowls with ash from burnt apple wood."),
    "d12": (
        "Dravenmoor railway",
        "The Dravenmoor railway climbs the pass with a rack and pinion locomotive.",
    ),
    "d13": ("Ulmarin tea", "Ulmarin tea is brewed from dried pine needles and smoked over juniper."),
    "d14": ("Corvath kites", "Corvath kites are flown at the spring festival to carry paper prayers aloft."),
    "d15": ("Nimbrook weaving", "Nimbrook weavers dye wool with crushed beetles for a deep crimson."),
    "d16": ("Fennimore clocks", "Fennimore clocks run on falling sand instead of springs or pendulums."),
    "d17": ("Yarrowgate bridges", "Yarrowgate bridges are woven from living willow roots over the river."),
    "d18": (
        "Peltrasse fencing",
        "Peltrasse fencing duels end when a fencer touches the opponent's left shoulder.",
    ),
    "d19": ("Wexley salt", "Wexley salt is harvested by raking evaporation ponds at low tide in August."),
    "d20": (
        "Orlanthi migration",
        " ".join(
            f"Year {n}: the Orlanthi geese flew south across the Kessarine plains, resting at lake {n}."
            for n in range(1, 25)
        ),  # long enough for several chunks: the document must count once, at its best chunk
    ),
}
QUERIES: dict[str, str] = {
    "q1": "How does a zorblax turbine make electricity?",
    "q2": "Where does quillfeather moss grow?",
    "q3": "How long is Brindlewick cheese aged?",
    "q4": "What instruments does the Vemmick orchestra play?",
    "q5": "How do Tolstrand ferries cross the frozen fjord?",
    "q6": "Where do the Orlanthi geese fly?",
    "q7": "What makes Glimmerfen eels glow green?",  # two relevant: d10 (grade 2), and one not in the corpus
    "q8": "What powers Fennimore clocks?",  # no qrels: not judged
    "q9": "How are Yarrowgate bridges built?",  # only a grade-0 judgement: not judged
}
QRELS: list[tuple[str, str, int]] = [
    ("q1", "d01", 1),
    ("q2", "d02", 1),
    ("q3", "d04", 1),
    ("q4", "d03", 1),
    ("q5", "d05", 1),
    ("q6", "d20", 1),
    ("q7", "d10", 2),
    ("q7", "d99", 1),
    ("q9", "d17", 0),
]
# By hand: q1-q6 find their document first (nDCG 1, recall 1, MRR 1); q7 finds d10 first but can never find
# d99: DCG = 2, ideal DCG = 2 + 1/log2(3), recall 1/2, MRR 1. q8 and q9 are not counted: 7 queries.
GUIDE_QUESTIONS = (
    "How do I stop an answer?",
    "Which headers select the tenant?",
    "resume after a disconnect",
)
JUDGED = 7
NDCG = (6 + 2 / (2 + 1 / math.log2(3))) / JUDGED
RECALL = (6 + 0.5) / JUDGED


def write_fixture(root: Path) -> dict[str, Path]:
    paths = {"corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl", "qrels": root / "qrels.tsv"}
    paths["corpus"].write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in DOCS.items())
    )
    paths["queries"].write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES.items()))
    paths["qrels"].write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS)
    )
    return paths


class TestEvalHarness:
    async def test_every_mode_scores_the_hand_computed_values(
        self, tmp_path: Path, offline_providers: Providers
    ) -> None:
        """Dense, sparse and hybrid rank each judged query's answer first; metrics equal the hand values."""
        paths = write_fixture(tmp_path)
        out = io.StringIO()
        await eval_command(
            make_settings(), **paths, as_json=True, providers=offline_providers, progress=False, out=out
        )
        report: dict[str, Any] = json.loads(out.getvalue())
        assert report["ingest"]["documents"] == len(DOCS)
        assert report["ingest"]["chunks"] > len(DOCS)  # d20 is several chunks
        assert report["ingest"]["embed_calls"] < len(DOCS)  # documents were batched together
        assert set(report["modes"]) == {"dense", "sparse", "hybrid"}
        for mode, result in report["modes"].items():
            assert result["queries"] == JUDGED, mode
            assert result["ndcg@10"] == pytest.approx(NDCG, abs=1e-4), mode
            assert result["recall@100"] == pytest.approx(RECALL, abs=1e-4), mode
            assert result["mrr@10"] == 1.0, mode
            assert 0 < result["p50_ms"] <= result["p99_ms"], mode

    async def test_table_and_query_limit(self, tmp_path: Path, offline_providers: Providers) -> None:
        """The table names each mode's figures and the ingestion rate; --limit-queries keeps the first N."""
        paths = write_fixture(tmp_path)
        out = io.StringIO()
        report = await eval_command(
            make_settings(),
            **paths,
            modes="hybrid",
            limit_queries=2,
            providers=offline_providers,
            progress=False,
            out=out,
        )
        table = out.getvalue()
        for heading in ("nDCG@10", "Recall@100", "MRR@10", "p99 ms", "chunks/s"):
            assert heading in table
        assert [(r.mode, r.queries, r.ndcg_at_10) for r in report.results] == [("hybrid", 2, 1.0)]


class TestEvalCommandLine:
    def test_python_m_chatbot_eval(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`python -m chatbot eval ... --json` runs offline and prints the report; a bad mode exits 2."""
        for name in ("OPENAI_API_KEY", "COHERE_API_KEY", "CO_API_KEY", "CHATBOT_EMBEDDING_PROVIDER"):
            monkeypatch.delenv(name, raising=False)
        paths = write_fixture(tmp_path)
        args = ["eval", "--corpus", str(paths["corpus"]), "--queries", str(paths["queries"])]
        args += ["--qrels", str(paths["qrels"])]
        assert main([*args, "--modes", "sparse", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["modes"]["sparse"]["ndcg@10"] == pytest.approx(NDCG, abs=1e-4)
        assert report["reranker"] == "none"
        assert main([*args, "--modes", "rerank"]) == 2
        assert "no reranker runs offline" in capsys.readouterr().err


class TestSameRetrievalAsThePipeline:
    @pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
    async def test_the_harness_ranks_what_the_pipeline_cites(
        self, offline_providers: Providers, guide_store: VectorStore, mode: EvalMode
    ) -> None:
        """The harness's retriever for a mode returns the chunks the pipeline cites (same chunks, order, scores;
        the pipeline groups them per document)."""
        settings = make_settings(retrieval={"mode": mode})
        retriever = retriever_for(settings, guide_store, offline_providers, mode)
        async with build_services(settings, providers=offline_providers, store=guide_store) as services:
            for i, question in enumerate(GUIDE_QUESTIONS):
                request = AnswerRequest(tenant="public", question=question, message_id=f"m{i}")
                async with contextlib.aclosing(services.pipeline.stream_answer(request)) as events:
                    [cited] = [e.sources async for e in events if isinstance(e, SourcesEvent)]
                ranked = await retriever.search("public", question)
                assert cited
                assert group_by_document(ranked[: settings.retrieval.top_k]) == list(cited)


class TestKeptCollection:
    async def test_the_second_run_reuses_the_ingested_collection(
        self, tmp_path: Path, offline_providers: Providers
    ) -> None:
        """--store keeps the ingest: a second run skips it, says so, and scores the same."""
        paths = write_fixture(tmp_path)
        logs = [io.StringIO(), io.StringIO()]
        reports = [
            await eval_command(
                make_settings(),
                **paths,
                modes="hybrid",
                providers=offline_providers,
                progress=False,
                out=io.StringIO(),
                store=tmp_path / "kept",
                collection="tiny",
                log=log,
            )
            for log in logs
        ]
        assert "(new collection)" in logs[0].getvalue()
        assert "reusing the ingested collection" in logs[1].getvalue()
        first, second = (r.ingest for r in reports)
        assert (first.reused, second.reused) == (False, True)
        assert second.documents == first.documents == len(DOCS)
        assert second.chunks == first.chunks
        assert reports[1].results[0].ndcg_at_10 == pytest.approx(NDCG, abs=1e-4)
        assert reports[1].to_dict()["ingest"]["reused"] is True

    async def test_a_changed_corpus_is_ingested_again(
        self, tmp_path: Path, offline_providers: Providers
    ) -> None:
        """Another corpus in the same kept collection re-ingests from scratch (no stale documents) and says why."""
        paths = write_fixture(tmp_path)
        kwargs: dict[str, Any] = {"modes": "sparse", "providers": offline_providers, "progress": False}
        kwargs |= {"out": io.StringIO(), "store": tmp_path / "kept"}
        await eval_command(make_settings(), **paths, **kwargs, log=io.StringIO())
        lines = paths["corpus"].read_text().splitlines(keepends=True)
        paths["corpus"].write_text("".join(line for line in lines if '"d01"' not in line))
        log = io.StringIO()
        report = await eval_command(make_settings(), **paths, **kwargs, log=log)
        assert "(corpus, documents changed)" in log.getvalue()
        assert report.ingest.documents == len(DOCS) - 1
        assert not report.ingest.reused
        assert report.results[0].ndcg_at_10 == pytest.approx(NDCG - 1 / JUDGED, abs=1e-4)  # q1 lost d01


class TestStoredCollection:
    def test_an_interrupted_or_unreadable_record_means_ingest_again(self, tmp_path: Path) -> None:
        """An index without a fingerprint (ingest interrupted) or with a corrupt one is never reused."""
        kept = StoredCollection(tmp_path, "c")
        want = {"corpus": "x"}
        assert kept.explain(want) == "new collection"
        kept.index.mkdir(parents=True)
        (kept.index / "data").write_text("half written")
        assert kept.explain(want) == "no completed ingest recorded"
        kept.record(want, {"documents": 3})
        assert kept.explain(want) is None
        assert kept.explain({"corpus": "y"}) == "corpus changed"
        (kept.index / "data").unlink()
        kept.index.rmdir()
        assert kept.explain(want) == "the index folder is missing"
        kept.index.mkdir()
        (kept.folder / FINGERPRINT).write_text("{not json")
        assert kept.explain(want) == "no completed ingest recorded"
        (kept.folder / FINGERPRINT).write_text("[1, 2]")
        assert kept.recorded() is None
        assert kept.ingest_figures() == {}
        kept.reset()
        assert not kept.index.exists()
        assert kept.folder.is_dir()

    @pytest.mark.parametrize("name", ["", "..", "../elsewhere", "a/b", ".hidden", "x\x00y", "sp ace"])
    def test_hostile_collection_names_are_refused(self, tmp_path: Path, name: str) -> None:
        """A collection name that could leave the store folder (or hide in it) is a ConfigError."""
        with pytest.raises(ConfigError):
            StoredCollection(tmp_path, name)

    def test_fingerprint_names_what_the_points_depend_on(self, offline_providers: Providers) -> None:
        """Corpus text, embedder and BM25 parameters change the fingerprint; the same inputs give the same one."""
        corpus = [CorpusDoc("a", "T", "text one"), CorpusDoc("b", "", "text two")]
        base = fingerprint(corpus, offline_providers)
        assert base == fingerprint(list(corpus), offline_providers)
        assert base["sparse"] == {"name": "bm25", "k": 1.2, "b": 0.75, "avg_len": 256.0}
        edited = [corpus[0], CorpusDoc("b", "", "text two!")]
        assert fingerprint(edited, offline_providers)["corpus"] != base["corpus"]
        tuned = dataclasses.replace(offline_providers, sparse=BM25SparseEmbedder(k=0.9))
        assert fingerprint(corpus, tuned)["sparse"] != base["sparse"]
        assert fingerprint(corpus, dataclasses.replace(offline_providers, sparse=None))["sparse"] is None
