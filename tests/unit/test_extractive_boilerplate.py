"""Boilerplate is never quoted: TOC lines, page numbers, navigation, running headers and footers."""

from __future__ import annotations

import pytest

from chatbot.providers.base import Passage
from chatbot.providers.extractive import select_sentences, split_sentences
from chatbot.providers.extractive.boilerplate import is_boilerplate, repeated_lines, strip_boilerplate
from chatbot.providers.local_models import TermAnalyzer


@pytest.fixture(scope="module")
def analyzer() -> TermAnalyzer:
    return TermAnalyzer()


class TestIsBoilerplate:
    @pytest.mark.parametrize(
        "line",
        [
            "Contents",
            "Table of Contents",
            "2 Migration . . . . . . . . . . 3",
            "Introduction .............. 1",
            "Prices \u2026\u2026\u2026 12",
            "12",
            "Page 3 of 10",
            "- 4 -",
            "\u2013 17 \u2013",
            "iv",
            "Home > Docs > Install",
            "Home \u203a Guides \u203a Websocket",
            "Skip to content",
            "Next",
            "Next: Uploading files",
            "\u00ab Previous",
            "Back to top",
            "Edit this page",
            "\u00a9 2024 Example Corp. All rights reserved.",
            "Copyright 2023 the authors",
        ],
    )
    def test_page_furniture_is_recognised(self, line: str) -> None:
        """TOC entries, page numbers, breadcrumbs, navigation labels and copyright lines are boilerplate."""
        assert is_boilerplate(line)

    @pytest.mark.parametrize(
        "line",
        [
            "Stop really stops: the server cancels the answer.",
            "next to the river the heron builds its nest",
            "The input > output rule applies to every stage",
            "Send a resume frame with the last seq you saw.",
            "The ferryman counts 12 bridges.",
            "Contents of the upload are checked before parsing.",
            "Next, send the ask frame.",
            "",
        ],
    )
    def test_content_that_looks_like_furniture_is_kept(self, line: str) -> None:
        """Sentences with arrows, numbers or navigation words in them are content, not boilerplate."""
        assert not is_boilerplate(line)

    def test_a_huge_dotted_line_is_handled_quickly(self) -> None:
        """A hostile line of 200k dots with no page number is judged without catastrophic backtracking."""
        assert not is_boilerplate(". " * 100_000 + "end")
        assert is_boilerplate("x" + "." * 200_000 + " 7")


class TestRepeatedLines:
    def test_running_header_and_footer_are_found_and_stripped(self) -> None:
        """Short unpunctuated lines in two passages (page numbers ignored) are removed from both."""
        texts = [
            "Shared Manual of Herons\nThe heron nests in reeds.\nConfidential - page 2",
            "Shared Manual of Herons\nThe egret fishes at dawn.\nConfidential - page 3",
        ]
        repeated = repeated_lines(texts)
        assert [strip_boilerplate(t, repeated) for t in texts] == [
            "The heron nests in reeds.",
            "The egret fishes at dawn.",
        ]

    def test_sentences_shared_by_overlapping_chunks_are_kept(self) -> None:
        """A punctuated sentence in two passages (chunk overlap) is content and stays."""
        texts = ["Resume with the last seq.\nMore here.", "Resume with the last seq.\nOther text."]
        assert repeated_lines(texts) == frozenset()

    def test_markdown_structure_is_never_a_running_header(self) -> None:
        """Headings, table rows and list items repeated across passages are not stripped."""
        texts = ["## Install\n| a | b |\n- item", "## Install\n| a | b |\n- item"]
        assert repeated_lines(texts) == frozenset()

    def test_fenced_code_is_left_alone(self) -> None:
        """A line inside a fenced block that looks like a page number stays."""
        text = "Run it:\n```\n12\nNext\n```\n12"
        assert strip_boilerplate(text) == "Run it:\n```\n12\nNext\n```"


class TestNeverQuoted:
    def test_toc_and_running_headers_are_not_quoted_even_when_they_match(
        self, analyzer: TermAnalyzer
    ) -> None:
        """A question echoing the TOC and the running header still gets the content sentence."""
        first = (
            "Shared Manual of Herons\nContents\n1 Migration of herons . . . . . . . . 3\n\nIntro text here."
        )
        second = "Shared Manual of Herons\nThe herons migrate every October to the Camargue marshes.\n12"
        passages = [Passage(1, first), Passage(2, second)]
        picks = select_sentences("When is the migration of herons in the manual?", passages, 4, analyzer)
        assert [p.text for p in picks] == ["The herons migrate every October to the Camargue marshes."]

    def test_navigation_sentences_are_not_candidates(self, analyzer: TermAnalyzer) -> None:
        """A breadcrumb or a pager on its own paragraph is never an answer."""
        text = (
            "Home > Docs > Websocket\n\nConnect to the websocket at /v1/ws to chat.\n\nNext: Websocket errors"
        )
        picks = select_sentences("websocket docs", [Passage(1, text)], 4, analyzer)
        assert [p.text for p in picks] == ["Connect to the websocket at /v1/ws to chat."]

    def test_table_rows_are_sentences_named_by_their_columns(self) -> None:
        """A spreadsheet's data row is quotable, each value named by its column header."""
        text = "| Metal | Price | Supplier |\n|---|---|---|\n| Molybdenum | 31 | Northern Forge |\n| | | |"
        assert [s.text for s in split_sentences(text)] == [
            "Metal: Molybdenum; Price: 31; Supplier: Northern Forge"
        ]

    def test_a_row_longer_than_its_header_keeps_its_extra_cells(self) -> None:
        """Cells past the header's columns are kept unnamed."""
        assert [s.text for s in split_sentences("| a |\n| 1 | 2 |")] == ["a: 1; 2"]

    def test_hostile_table_lines_split_in_linear_time(self) -> None:
        """A 200k-dash pseudo rule and a 50k-cell row are read without catastrophic backtracking."""
        text = "| a | b |\n| " + "-" * 200_000 + "x\n|" + " 1 |" * 50_000
        spans = split_sentences(text)
        assert len(spans) == 2
        assert spans[1].text.startswith("a: 1; b: 1; 1; 1")
