"""The bench's targets table: figures from load levels and sections, section results, the README table."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from bench import offline, readme_table, sections
from bench.targets import Figure


def level(conversations: int, **figures: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "design": "async", "transport": "ws", "conversations": conversations, "turns_per_s": 10.0,
        "cpu_ms_per_turn": 7.5, "loop_cpu_ms_per_turn": 3.0, "ttft_excess_p50_ms": 4.0,
        "ttft_excess_p99_ms": 60.0, "gap_p99_ms": 40.0, "loop_lag_p99_ms": 9.0, "peak_rss_mb": 480.0,
        "errors": {}, "think_s": 0.0,
    }  # fmt: skip
    row.update(figures)
    return row


class TestLevelFigures:
    def test_each_target_reads_its_level(self) -> None:
        """CPU, lag and TTFT p99 come from the 50-conversation ws row, TTFT p50 from the 1-conversation row."""
        rows = [level(1, ttft_excess_p50_ms=4.5), level(50, cpu_ms_per_turn=7.5), level(50, transport="sse")]
        found = {f.target.name: f for f in sections.level_figures(rows)}
        assert found["cpu_ms_per_turn_50ws"].value == 7.5
        assert found["cpu_ms_per_turn_50ws"].to_dict()["verdict"] == "NOT MET"
        assert found["loop_lag_p99_ms_50ws"].to_dict()["verdict"] == "MET"
        assert found["ttft_excess_p50_ms_1ws"].value == 4.5
        assert found["ttft_excess_p99_ms_50ws"].value == 60.0

    def test_a_missing_level_is_not_measured_and_errors_are_noted(self) -> None:
        """No 1-conversation row: NOT MEASURED with a note; a row with errors carries their count."""
        found = {f.target.name: f for f in sections.level_figures([level(50, errors={"timeout": 2})])}
        assert found["ttft_excess_p50_ms_1ws"].to_dict()["verdict"] == "NOT MEASURED"
        assert found["ttft_excess_p50_ms_1ws"].note == "level 1 not run"
        assert found["cpu_ms_per_turn_50ws"].note == "2 errors"


class TestSectionResults:
    @pytest.mark.parametrize("figure", [*sections.level_figures([level(1), level(50)]),
                                        *offline.figures([])])  # fmt: skip
    def test_figure_survives_the_json_round_trip(self, figure: Figure) -> None:
        """A section's Figure.to_dict() read back is the same figure, verdict included."""
        back = sections.figure_from_dict(json.loads(json.dumps(figure.to_dict())))
        assert back.to_dict() == figure.to_dict()

    def test_last_line_with_figures_is_the_result(self) -> None:
        """Only a last line holding a JSON object with a "figures" list is a section's result."""
        assert sections.last_json('human line\n{"figures": [], "x": 1}\n\n') == {"figures": [], "x": 1}
        assert sections.last_json('{"figures": []}\nlast words') is None
        assert sections.last_json('{"other": 1}') is None
        assert sections.last_json('["figures"]') is None
        assert sections.last_json("") is None

    def test_missing_module_is_not_measured(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A section whose module does not exist yet prints NOT MEASURED and gives no figures."""
        result = sections.run_section("bench.no_such_section", quick=True, log=tmp_path / "log")
        assert result == {"figures": [], "error": "module missing"}
        assert "NOT MEASURED: module missing" in capsys.readouterr().out

    def test_a_section_that_prints_no_result_is_not_measured(self, tmp_path: Path) -> None:
        """A module that runs but ends without a figures line is reported, not trusted."""
        result = sections.run_section("bench.readme_table", quick=False, log=tmp_path / "log", timeout=60)
        assert result["figures"] == []
        assert result["error"].startswith("exit ")


class TestOfflineFigures:
    def test_figures_from_the_two_levels(self) -> None:
        """Capacity reads turns/s of the closed-loop level, the paced target its TTFT p99."""
        rows = [level(50, level="capacity", turns_per_s=210.0),
                level(100, level="paced", ttft_excess_p99_ms=140.0, errors={"timeout": 1})]  # fmt: skip
        capacity, paced = offline.figures(rows)
        assert (capacity.value, capacity.to_dict()["verdict"]) == (210.0, "MET")
        assert (paced.value, paced.to_dict()["verdict"], paced.note) == (140.0, "NOT MET", "1 errors")

    def test_levels_not_run_are_not_measured(self) -> None:
        """With no rows, both offline targets are NOT MEASURED."""
        assert [f.to_dict()["verdict"] for f in offline.figures([])] == ["NOT MEASURED", "NOT MEASURED"]

    def test_offline_env_pins_the_offline_providers(self, tmp_path: Path) -> None:
        """The offline server gets the local embedder and the extractive answer, with provider keys blanked."""
        env = offline.offline_env(tmp_path, 8123)
        assert env["CHATBOT_EMBEDDING_PROVIDER"] == "local"
        assert env["CHATBOT_CHAT_PROVIDER"] == "extractive"
        assert env["OPENAI_API_KEY"] == env["COHERE_API_KEY"] == ""
        assert env["CHATBOT_SERVER__PORT"] == "8123"


class TestReadmeTable:
    def report(self) -> dict[str, Any]:
        figures = sections.level_figures([level(1), level(50)]) + offline.figures(
            [level(50, level="capacity", turns_per_s=123.456), level(100, level="paced", think_s=1.0)]
        )
        return {
            "date": "2026-12-07T03:00:00", "quick": True, "git": "abc1234",
            "machine": {"cpus": 2, "memory_gib": 24, "python": "3.11.7"}, "load_average_at_start": [1.25, 1, 1],
            "levels": [level(1), level(50, design="sync", loop_lag_p99_ms=None)],
            "sections": {"bench.offline": {"levels": [level(50, level="capacity", turns_per_s=123.456)]}},
            "targets": [f.to_dict() for f in figures],
        }  # fmt: skip

    def test_markdown_has_every_table(self) -> None:
        """Heading, load levels, offline levels and the targets table with verdicts, from one results file."""
        text = readme_table.markdown(self.report())
        assert text.startswith(
            "`make bench-quick`, 2026-12-07, 2 vCPU, 24 GiB, Python 3.11.7, load average 1.2"
        )
        assert "| sync peer | ws | 50 | 10 | 7.5 | 4 / 60 | 40 | n/a | 480 |" in text
        assert "| capacity | 50 | 0 | 123 | 7.5 | 4 / 60 | 9 | 480 |" in text
        assert "| offline: turns/s, 50 closed-loop ws | 123 turns/s | >= 200 turns/s | **NOT MET** |" in text
        assert "| fake upstream: server CPU per turn, 50 ws | 7.5 ms | <= 6 ms | **NOT MET** |" in text
        assert "| fake upstream: TTFT excess p50, 1 ws | 4 ms | <= 5 ms | **MET** |" in text

    def test_cli_prints_the_markdown(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`python -m bench.readme_table FILE` prints what markdown() makes of the file."""
        path = tmp_path / "run.json"
        path.write_text(json.dumps(self.report()), encoding="utf-8")
        import sys

        argv, sys.argv = sys.argv, ["readme_table", str(path)]
        try:
            readme_table.main()
        finally:
            sys.argv = argv
        assert capsys.readouterr().out == readme_table.markdown(self.report())

    def test_an_empty_results_file_gives_only_the_heading(self) -> None:
        """A results file without levels, sections or targets still renders a heading, nothing else."""
        assert readme_table.markdown({}) == "`make bench`, , ? vCPU, ? GiB, Python ? (git ?):\n"


@pytest.mark.parametrize(
    "module", sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "bench").glob("*.py"))
)
def test_every_bench_module_imports(module: str) -> None:
    """Each bench module imports (a section that cannot import prints NOT MEASURED only at bench time)."""
    importlib.import_module(f"bench.{module}")
