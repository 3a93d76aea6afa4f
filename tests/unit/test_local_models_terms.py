"""TermAnalyzer's token memo: the same terms with or without it, and bounded against unique-token floods."""

from __future__ import annotations

from chatbot.providers.local_models import TermAnalyzer

TEXT = (
    "The Streaming answers stream over websockets; the widget's streams resume. _ __init__ "
    "naïve café Straße " + "x" * 41 + " 42 and THE and"
)


class TestMemo:
    def test_memo_hits_give_the_terms_of_a_first_analysis(self) -> None:
        """Analysing a text twice (second time from the memo) gives the terms a memo-less analysis gives."""
        analyzer = TermAnalyzer()
        first = analyzer.terms(TEXT)
        assert analyzer.terms(TEXT) == first
        assert TermAnalyzer(memo_size=1).terms(TEXT) == first
        assert first[:4] == ["stream", "answer", "stream", "websocket"]
        assert "the" not in first  # a stopword, remembered as dropped
        assert "x" * 41 not in first  # over-long, remembered as dropped
        assert "_" not in first  # lone punctuation

    def test_unique_token_flood_keeps_the_memo_bounded(self) -> None:
        """A text of 5,000 unique tokens never holds more than memo_size entries, and analyses right."""
        analyzer = TermAnalyzer(memo_size=100)
        flood = " ".join(f"token{i}" for i in range(5000))
        terms = analyzer.terms(flood)
        assert len(terms) == 5000
        assert len(analyzer._memo) <= 100
        assert analyzer.terms("streaming") == ["stream"]
