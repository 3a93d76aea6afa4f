"""Sources grouped per document (and page): one citation per document, the page of what is quoted."""

from __future__ import annotations

from chatbot.events import Source
from chatbot.rag.grouping import group_by_document

DOC = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota. Kappa lambda mu."


def chunk(
    doc: str,
    index: int,
    span: tuple[int, int] | None,
    *,
    score: float = 0.5,
    page: int | None = None,
    text: str | None = None,
) -> Source:
    start, end = span if span is not None else (None, None)
    body = text if text is not None else (DOC[start:end] if span is not None else f"chunk {index}")
    return Source(
        n=0,
        doc_id=doc,
        source=f"{doc}.md",
        title=doc,
        heading_path=(doc, f"part {index}"),
        chunk_index=index,
        text=body,
        score=score,
        page_start=page,
        page_end=page,
        char_start=start,
        char_end=end,
    )


class TestGroupByDocument:
    def test_chunks_of_one_document_become_one_source(self) -> None:
        """Overlapping chunks of one document: one source, its text in order with the overlap once."""
        hits = [chunk("a", 1, (18, 52), score=0.9), chunk("a", 0, (0, 36), score=0.7)]
        [source] = group_by_document(hits)
        assert source.n == 1
        assert source.text == DOC[0:52]
        assert (source.char_start, source.char_end) == (0, 52)
        assert source.score == 0.9
        assert source.chunk_index == 1  # the best chunk's: its heading path and index
        assert source.heading_path == ("a", "part 1")

    def test_documents_keep_retrieval_order_and_are_numbered(self) -> None:
        """A1, B0, A2 -> [1] A (with A2), [2] B: each group stands where its best chunk was."""
        hits = [chunk("a", 1, None), chunk("b", 0, None), chunk("a", 2, None)]
        grouped = group_by_document(hits)
        assert [(s.n, s.doc_id) for s in grouped] == [(1, "a"), (2, "b")]
        assert grouped[0].text == "chunk 1\n\nchunk 2"
        assert grouped[0].char_start is None

    def test_pages_of_one_document_stay_apart(self) -> None:
        """A PDF's chunks on pages 3 and 5 are two sources, each with its own page."""
        hits = [chunk("r", 4, None, page=3), chunk("r", 9, None, page=5), chunk("r", 5, None, page=3)]
        grouped = group_by_document(hits)
        assert [(s.n, s.page_start, s.text) for s in grouped] == [
            (1, 3, "chunk 4\n\nchunk 5"),
            (2, 5, "chunk 9"),
        ]

    def test_spans_that_lie_about_their_text_are_not_trimmed(self) -> None:
        """Overlapping spans whose texts do not agree are joined whole, never cut mid-text."""
        hits = [chunk("a", 0, (0, 36)), chunk("a", 1, (18, 52), text="Something else entirely here.")]
        [source] = group_by_document(hits)
        assert source.text == DOC[0:36] + "\n\nSomething else entirely here."

    def test_partly_known_spans_fall_back_to_the_best_chunks(self) -> None:
        """When one member's span is unknown the group's span is its best chunk's."""
        hits = [chunk("a", 0, (0, 18)), chunk("a", 3, None)]
        [source] = group_by_document(hits)
        assert (source.char_start, source.char_end) == (0, 18)

    def test_nothing_in_nothing_out(self) -> None:
        """No hits, no sources."""
        assert group_by_document([]) == []
