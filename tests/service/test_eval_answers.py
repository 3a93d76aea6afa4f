"""`eval --answers` on the committed small fixture (tests/fixtures/eval_small, invented), hand-computed.

Corpus: six invented documents, one topic each. Answerable: a1-a4 (their document is the only one using
their words: cited), a5 (its qrel names e9, which is not in the corpus: never a hit), and the two pairs
(e6, e5: cited). Citation hits 6 of 7. Unanswerable: u1-u4 and the mercury pair share no word with any
document (the extractive answer quotes nothing: declined at any threshold); u5 shares only "moor" with e3
(top cosine about 0.27: refused at threshold 0.5, quoted without one); u6 asks who built the Marrowfield
windmills, which e1 does not say, yet e1 is close (cosine about 0.68): answered at 0.5, the near-topic
case a cosine threshold cannot catch. Refusals: 6 of 7 at 0.5, 5 of 7 with refusals off. Every answerable
question scores above 0.74: no false refusal. The extractive answer quotes its sources: faithfulness 1.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from chatbot.__main__ import main
from chatbot.eval.answers import pair_cases, unanswerable_cases
from chatbot.eval.harness import eval_command
from chatbot.providers.registry import Providers
from tests.conftest import make_settings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "eval_small"
PATHS = {name: FIXTURE / f"{name}.jsonl" for name in ("corpus", "queries")} | {"qrels": FIXTURE / "qrels.tsv"}


def extra_cases() -> list[Any]:
    return [*unanswerable_cases(FIXTURE / "unanswerable.jsonl"), *pair_cases(FIXTURE / "pairs.jsonl")]


class TestAnswerEvaluation:
    @pytest.mark.parametrize(("threshold", "refused"), [(0.5, 6), (0.0, 5)])
    async def test_hand_computed_rates(
        self, offline_providers: Providers, threshold: float, refused: int
    ) -> None:
        """Citation hits 6/7, no false refusal, faithfulness 1, refusals 6/7 at 0.5 and 5/7 with refusals off."""
        out = io.StringIO()
        settings = make_settings(retrieval={"refusal_threshold": threshold})
        await eval_command(
            settings, **PATHS, as_json=True, providers=offline_providers, progress=False, out=out,
            answers=extra_cases(),
        )  # fmt: skip
        report = json.loads(out.getvalue())
        assert report["answers"]["chat"] == "extractive"
        assert set(report["answers"]["modes"]) == {"dense", "sparse", "hybrid"}
        for mode, result in report["answers"]["modes"].items():
            assert (result["answerable"], result["unanswerable"]) == (7, 7), mode
            assert result["citation_hit_rate"] == pytest.approx(6 / 7, abs=1e-4), mode
            assert result["false_refusal_rate"] == 0.0, mode
            assert result["refusal_rate"] == pytest.approx(refused / 7, abs=1e-4), mode
            assert result["faithfulness"] == 1.0, mode

    def test_command_line_prints_both_tables(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`python -m chatbot eval --answers --unanswerable --pairs` prints the retrieval and answer tables."""
        for name in ("OPENAI_API_KEY", "COHERE_API_KEY", "CO_API_KEY", "CHATBOT_EMBEDDING_PROVIDER"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CHATBOT_RETRIEVAL__REFUSAL_THRESHOLD", "0.5")
        args = ["eval", "--modes", "hybrid", *(f"--{k}={v}" for k, v in PATHS.items())]
        extra = [
            "--unanswerable",
            str(FIXTURE / "unanswerable.jsonl"),
            "--pairs",
            str(FIXTURE / "pairs.jsonl"),
        ]
        assert main([*args, "--answers", *extra]) == 0
        table = capsys.readouterr().out
        assert "nDCG@10" in table
        answers = table.split("answers by extractive")[1].splitlines()
        assert answers[2].split() == ["hybrid", "0.8571", "0.0000", "0.8571", "1.0000", "7", "7"]

    def test_cases_without_answers_flag_is_an_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--pairs or --unanswerable without --answers exits 2 with a message (nothing is ingested)."""
        args = ["eval", *(f"--{k}={v}" for k, v in PATHS.items()), "--pairs", str(FIXTURE / "pairs.jsonl")]
        assert main(args) == 2
        assert "need --answers" in capsys.readouterr().err
