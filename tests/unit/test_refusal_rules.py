"""The refusal threshold's rules (rag/confidence.py), its fitting (eval/refusal.py) and answer judging
(eval/answers.py): pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.errors import ConfigError
from chatbot.eval.answers import judge, matches, pair_cases
from chatbot.eval.refusal import band_refused, fit_minimum, fit_threshold, rates, refused, term_coverage
from chatbot.events import Source
from chatbot.providers.base import SparseVector
from chatbot.rag.confidence import (
    CALIBRATIONS,
    Calibration,
    Signals,
    calibration_for,
    confident,
    refuses,
    threshold_for,
)
from chatbot.settings import RetrievalSettings


def source(n: int, name: str, text: str) -> Source:
    return Source(
        n=n, doc_id=name, source=name, title="", heading_path=(), chunk_index=0, text=text, score=1.0
    )


class TestThreshold:
    def test_setting_overrides_the_calibration(self) -> None:
        """An explicit refusal_threshold wins; 0 turns refusals off."""
        assert threshold_for("local/anything", RetrievalSettings(refusal_threshold=0.42)) == 0.42
        assert threshold_for("local/anything", RetrievalSettings(refusal_threshold=0)) is None

    def test_uncalibrated_embedder_never_refuses(self) -> None:
        """Without a setting, an embedder missing from CALIBRATIONS (API embedders) has no threshold."""
        assert threshold_for("openai/text-embedding-3-small", RetrievalSettings()) is None

    def test_calibrated_embedders_use_their_table_entry(self) -> None:
        """Every CALIBRATIONS entry is a cosine in (0, 1) and is the default for its embedder."""
        assert CALIBRATIONS
        for name, calibration in CALIBRATIONS.items():
            assert isinstance(calibration, Calibration)
            assert 0 < calibration.threshold < 1
            assert threshold_for(name, RetrievalSettings()) == calibration.threshold

    def test_out_of_range_setting_is_rejected(self) -> None:
        """A threshold outside [0, 1] fails at start-up, not at the first question."""
        with pytest.raises(ValueError, match="refusal_threshold"):
            RetrievalSettings(refusal_threshold=1.5)

    def test_confident(self) -> None:
        """Refuse only when a threshold is set and the top cosine is below it."""
        assert confident(0.2, None)
        assert confident(None, 0.5)
        assert confident(0.5, 0.5)
        assert not confident(0.49, 0.5)


class TestGapRule:
    RULE = Calibration(0.25, 0.0, 0.0, "test", ceiling=0.35, min_gap=0.1, gap_rank=20)

    def test_refuses_below_the_threshold_whatever_the_gap(self) -> None:
        """Below the threshold the gap does not matter: a peaked match is refused too."""
        assert refuses(self.RULE, Signals(None, 0.2, 0.5))
        assert refuses(self.RULE, Signals(None, 0.2, None))

    def test_refuses_a_flat_field_under_the_ceiling(self) -> None:
        """Between threshold and ceiling, a top cosine barely above the 20th best is refused, a peak is not."""
        assert refuses(self.RULE, Signals(None, 0.3, 0.05))
        assert not refuses(self.RULE, Signals(None, 0.3, 0.1))
        assert not refuses(self.RULE, Signals(None, 0.35, 0.0))  # at the ceiling: answered

    def test_no_gap_or_no_match_is_not_refused_on_it(self) -> None:
        """Fewer chunks than the gap rank (no gap) or nothing matched: only the threshold can refuse."""
        assert not refuses(self.RULE, Signals(None, 0.3, None))
        assert not refuses(self.RULE, Signals(None, None, None))

    def test_without_a_ceiling_the_cosine_alone_decides(self) -> None:
        """A rule without a ceiling (a threshold setting) ignores the gap."""
        alone = Calibration(0.25, 0.0, 0.0, "test")
        assert not refuses(alone, Signals(None, 0.3, 0.0))
        assert refuses(alone, Signals(None, 0.24, 0.9))

    def test_a_threshold_setting_replaces_the_calibration(self) -> None:
        """CHATBOT_RETRIEVAL__REFUSAL_THRESHOLD gives a cosine-only rule; 0 turns refusals off."""
        rule = calibration_for(next(iter(CALIBRATIONS)), RetrievalSettings(refusal_threshold=0.4))
        assert rule is not None
        assert (rule.threshold, rule.ceiling) == (0.4, None)
        assert calibration_for(next(iter(CALIBRATIONS)), RetrievalSettings(refusal_threshold=0)) is None

    def test_the_offline_calibration_uses_the_gap(self) -> None:
        """The MiniLM entry refuses flat fields under a ceiling above its threshold."""
        rule = CALIBRATIONS["local/all-MiniLM-L6-v2-int8"]
        assert rule.ceiling is not None
        assert rule.threshold < rule.ceiling < 1
        assert 0 < rule.min_gap < 1
        assert rule.gap_rank > 1


class TestFitting:
    def test_fit_takes_the_strictest_set(self) -> None:
        """The threshold lets at most 5% of each set's answerable scores fall below it (3 decimals, down)."""
        a = [i / 100 for i in range(40, 60)]  # 20 scores: one may be refused -> the 2nd lowest, 0.41
        b = [0.3456, *[0.9] * 19]
        assert fit_threshold({"a": a}, max_false_refusal=0.05) == 0.41
        assert fit_threshold({"a": a, "b": b}, max_false_refusal=0.05) == 0.41
        assert fit_threshold({"b": b}, max_false_refusal=0.0) == 0.345

    def test_fit_needs_scores(self) -> None:
        """An empty answerable set is an error, not a threshold of nothing."""
        with pytest.raises(ValueError, match="no answerable"):
            fit_threshold({"a": []}, max_false_refusal=0.05)

    def test_rates(self) -> None:
        """Refusal rate over unanswerable scores, false refusals over answerable ones."""
        r = rates(0.5, answerable=[0.4, 0.6, 0.7, 0.8], unanswerable=[0.1, 0.2, 0.9])
        assert (r.false_refusal_rate, r.refusal_rate) == (0.25, pytest.approx(2 / 3))
        assert rates(0.5, [], []).refusal_rate == 0.0
        assert refused(0.49, 0.5)
        assert not refused(None, 0.5)

    def test_band_rule(self) -> None:
        """Refused below the floor; between floor and ceiling only when the signal is below the minimum."""
        assert band_refused(0.1, 0.9, 0.2, 0.3, 0.5)
        assert band_refused(0.25, 0.4, 0.2, 0.3, 0.5)
        assert not band_refused(0.25, 0.5, 0.2, 0.3, 0.5)
        assert not band_refused(0.25, None, 0.2, 0.3, 0.5)
        assert not band_refused(0.3, 0.0, 0.2, 0.3, 0.5)

    def test_fit_minimum_stops_at_the_first_set_over_budget(self) -> None:
        """The minimum rises while every set keeps its false refusals within the budget."""
        # 20 answerable questions in the band with signals 0.00..0.19: one may be refused -> minimum 0.01
        a = [(0.25, i / 100) for i in range(20)]
        assert fit_minimum({"a": a}, floor=0.2, ceiling=0.3, max_false_refusal=0.05) == 0.01
        above = [(0.5, 0.0)] * 20  # over the ceiling: never refused, any minimum fits
        assert fit_minimum({"b": above}, floor=0.2, ceiling=0.3, max_false_refusal=0.0) == 0.0
        b = [(0.25, 0.0), *[(0.5, 0.0)] * 19]  # one question refused by any minimum above 0
        assert fit_minimum({"a": a, "b": b}, floor=0.2, ceiling=0.3, max_false_refusal=0.0) == 0.0

    def test_term_coverage(self) -> None:
        """The share of the query's terms in the chunk; an empty query covers nothing."""
        chunk = SparseVector(indices=[1, 2, 3], values=[1.0, 1.0, 1.0])
        assert term_coverage(SparseVector(indices=[1, 4], values=[1.0, 1.0]), chunk) == 0.5
        assert term_coverage(SparseVector(indices=[], values=[]), chunk) == 0.0


class TestJudging:
    SOURCES = (
        source(1, "a.md", "Windmills grind barley with reed sails."),
        source(2, "b.md", "Ovens bake cakes."),
    )

    def test_citations_and_faithfulness(self) -> None:
        """Cited documents are collected; a sentence is faithful when 80% of its content words are cited text."""
        answer = "Windmills grind barley [1]. Ovens bake cakes with honey and cream and sugar [2]. No cite."
        answered = judge(answer, self.SOURCES, no_relevant_sources=False)
        assert answered.cited == {"a.md", "b.md"}
        assert not answered.declined
        assert (answered.cited_sentences, answered.faithful_sentences) == (2, 1)

    def test_declines(self) -> None:
        """No citation, or the no-relevant-sources flag, is a declined answer."""
        assert judge(
            "I could not find this in the documents.", self.SOURCES, no_relevant_sources=False
        ).declined
        assert judge("Grind [1].", self.SOURCES, no_relevant_sources=True).declined

    def test_hostile_citations(self) -> None:
        """Citations of sources that do not exist ([0], [99], [1234]) cite nothing."""
        answered = judge("Made up [0][99]. More [1234].", self.SOURCES, no_relevant_sources=False)
        assert answered.cited == frozenset()
        assert answered.declined
        assert answered.cited_sentences == 0

    def test_matches_by_name_or_corpus_id(self) -> None:
        """A relevant entry matches a source by its name or by the corpus id it was ingested under."""
        assert matches(["e1.md"], frozenset({"e1"}))
        assert matches(["guide/http-api.md"], frozenset({"guide/http-api.md"}))
        assert not matches(["e2.md"], frozenset({"e1"}))


class TestPairs:
    def test_reads_pairs(self, tmp_path: Path) -> None:
        """Pairs with a source are answerable; kind unanswerable or a null source are not."""
        path = tmp_path / "pairs.jsonl"
        path.write_text(
            '{"question": "q1", "expected_source": "a.md", "kind": "paraphrase"}\n\n'
            '{"question": "q2", "expected_source": null, "kind": "x"}\n'
            '{"question": "q3", "expected_source": "b.md", "kind": "unanswerable"}\n'
        )
        cases = pair_cases(path)
        assert [(c.question, c.answerable, c.relevant) for c in cases] == [
            ("q1", True, frozenset({"a.md"})),
            ("q2", False, frozenset()),
            ("q3", False, frozenset()),
        ]

    @pytest.mark.parametrize("line", ["not json", "[1, 2]", '{"expected_source": "a.md"}'])
    def test_hostile_pair_lines(self, tmp_path: Path, line: str) -> None:
        """A malformed line is a ConfigError naming the file and line, not a traceback."""
        path = tmp_path / "pairs.jsonl"
        path.write_text('{"question": "ok"}\n' + line + "\n")
        with pytest.raises(ConfigError, match=r"pairs\.jsonl:2"):
            pair_cases(path)
