"""chunk_document: packing, splitting, overlap, hashing and scale."""

from __future__ import annotations

import hashlib
import itertools
import re

import pytest

from chatbot.ingest.chunking import Chunk, chunk_document
from chatbot.ingest.loaders import ParsedDocument, Section, load_document
from chatbot.stores.base import ChunkRecord


def doc_of(*sections: tuple[tuple[str, ...], str]) -> ParsedDocument:
    return ParsedDocument(
        source="t.md",
        title="T",
        media_type="text/markdown",
        sections=tuple(Section(path, text) for path, text in sections),
    )


def sentences(count: int, words: int = 8) -> str:
    """``count`` distinct sentences of ``words`` words each, separated by single spaces."""
    return " ".join(
        f"Sentence{n} " + " ".join(f"word{n}x{w}" for w in range(words - 1)) + "." for n in range(count)
    )


def texts(chunks: list[Chunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


class TestChunk:
    def test_embed_text_prefixes_the_heading_path(self) -> None:
        """embed_text is 'A > B' then a blank line then the text."""
        chunk = Chunk(0, "Body.", ("Guide", "Stop"), "h")
        assert chunk.embed_text == "Guide > Stop\n\nBody."

    def test_embed_text_without_headings_is_the_text(self) -> None:
        """An empty heading path adds nothing."""
        assert Chunk(0, "Body.", (), "h").embed_text == "Body."

    def test_content_hash_covers_heading_path_and_text(self) -> None:
        """The hash is the sha256 of the path and text, so a renamed heading changes it."""
        [chunk] = chunk_document(doc_of((("A", "B"), "Same text.")))
        expected = hashlib.sha256(b"A\x1fB\x1eSame text.").hexdigest()
        assert chunk.content_hash == expected
        [renamed] = chunk_document(doc_of((("A", "C"), "Same text.")))
        assert renamed.content_hash != chunk.content_hash

    def test_chunking_is_deterministic(self) -> None:
        """The same document gives equal chunks and hashes every time."""
        doc = doc_of((("A",), sentences(200)), (("B",), sentences(50)))
        assert chunk_document(doc, max_chars=300) == chunk_document(doc, max_chars=300)


class TestPacking:
    def test_small_section_is_one_chunk(self) -> None:
        """A section that fits is a single chunk with its exact text and path."""
        [chunk] = chunk_document(doc_of((("Guide", "Intro"), "Hello there.\n\nSecond paragraph.")))
        text = "Hello there.\n\nSecond paragraph."
        assert chunk == Chunk(0, text, ("Guide", "Intro"), chunk.content_hash, 0, len(text))

    def test_whole_paragraphs_are_packed_up_to_max_chars(self) -> None:
        """Paragraphs fill a chunk while they fit and are never cut when they fit on their own."""
        paragraphs = [f"P{i} " + "x" * 290 + "." for i in range(5)]
        chunks = chunk_document(doc_of((("S",), "\n\n".join(paragraphs))), max_chars=700, overlap_chars=0)
        assert texts(chunks) == [
            "\n\n".join(paragraphs[0:2]),
            "\n\n".join(paragraphs[2:4]),
            paragraphs[4],
        ]

    def test_a_chunk_never_spans_two_sections(self) -> None:
        """Tiny neighbouring sections still get a chunk each."""
        chunks = chunk_document(doc_of((("A",), "one"), (("A", "B"), "two"), (("C",), "three")))
        assert [(c.index, c.heading_path, c.text) for c in chunks] == [
            (0, ("A",), "one"),
            (1, ("A", "B"), "two"),
            (2, ("C",), "three"),
        ]

    def test_indices_run_across_sections(self) -> None:
        """Indices are 0..n-1 over the whole document."""
        chunks = chunk_document(doc_of((("A",), sentences(40)), (("B",), sentences(40))), max_chars=200)
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert {c.heading_path for c in chunks} == {("A",), ("B",)}

    def test_whitespace_only_sections_produce_no_chunks(self) -> None:
        """Empty and blank sections are skipped without using up an index."""
        chunks = chunk_document(doc_of((("A",), ""), (("B",), " \n\t\n "), (("C",), "text")))
        assert [(c.index, c.heading_path) for c in chunks] == [(0, ("C",))]

    def test_surrounding_whitespace_is_trimmed(self) -> None:
        """Chunk text starts and ends with content."""
        [chunk] = chunk_document(doc_of((("A",), "\n\n   indented start.  \n\n")))
        assert chunk.text == "indented start."


class TestSplitting:
    def test_long_paragraph_splits_at_sentence_ends(self) -> None:
        """Without overlap, every chunk of a long paragraph ends a sentence and starts the next."""
        text = sentences(60)
        chunks = chunk_document(doc_of((("A",), text)), max_chars=250, overlap_chars=0)
        assert len(chunks) > 5
        assert all(
            len(c.text) <= 250 and c.text.endswith(".") and c.text.startswith("Sentence") for c in chunks
        )
        assert " ".join(texts(chunks)) == text

    def test_lower_case_after_a_period_is_not_a_sentence_start(self) -> None:
        """'e.g. this' is not cut after the abbreviation."""
        text = "First part e.g. continues here. " * 20
        chunks = chunk_document(doc_of((("A",), text)), max_chars=100, overlap_chars=0)
        assert all(c.text.startswith("First part") for c in chunks)

    def test_long_sentence_splits_at_whitespace(self) -> None:
        """A sentence longer than max_chars is wrapped at spaces; every word survives intact."""
        words = [f"w{i:04d}" for i in range(600)]
        chunks = chunk_document(doc_of((("A",), " ".join(words))), max_chars=100, overlap_chars=20)
        assert all(len(c.text) <= 100 for c in chunks)
        assert [w for c in chunks for w in c.text.split()] == words

    def test_word_longer_than_max_chars_is_cut_hard(self) -> None:
        """A single 2500-character token becomes 1000 + 1000 + 500."""
        chunks = chunk_document(doc_of((("A",), "x" * 2500)))
        assert [len(c.text) for c in chunks] == [1000, 1000, 500]

    def test_unpunctuated_lines_split_at_line_breaks(self) -> None:
        """A long table-like paragraph without sentence ends is cut between rows."""
        rows = [f"row {i} | value {i}" for i in range(100)]
        chunks = chunk_document(doc_of((("A",), "\n".join(rows))), max_chars=120, overlap_chars=0)
        assert [line for c in chunks for line in c.text.split("\n")] == rows

    def test_list_items_are_sentence_starts(self) -> None:
        """A long list splits between items, and overlap starts at an item."""
        items = [f"- item number {i} without a full stop" for i in range(40)]
        chunks = chunk_document(doc_of((("A",), "\n".join(items))), max_chars=200, overlap_chars=60)
        assert all(c.text.startswith("- item") for c in chunks)
        assert {line for c in chunks for line in c.text.split("\n")} == set(items)

    def test_fenced_code_nested_in_a_list_item_stays_whole(self) -> None:
        """An indented fence inside a list item is code too: never cut between its blank lines."""
        code = "   ```console\n" + "\n\n".join(f"   $ step {i} --flag" for i in range(12)) + "\n   ```"
        text = "1. Run the binary:\n\n" + code + "\n\n" + "Afterwards it works. " * 10
        chunks = chunk_document(doc_of((("A",), text)), max_chars=400, overlap_chars=0)
        assert any(code.strip() in c.text for c in chunks)

    def test_fenced_code_block_stays_whole_when_it_fits(self) -> None:
        """A code block that fits max_chars is never cut, even if that leaves the previous chunk short."""
        prose = "Intro sentence here. " * 20
        code = "```python\n" + "\n\n".join(f"line_{i} = {i}  # comment" for i in range(15)) + "\n```"
        chunks = chunk_document(
            doc_of((("A",), prose.strip() + "\n\n" + code)), max_chars=600, overlap_chars=0
        )
        assert [c.text for c in chunks if "```" in c.text] == [code]

    def test_oversized_code_block_splits_between_lines(self) -> None:
        """A code block over max_chars is cut only at line boundaries; every line survives."""
        lines = [f"    value_{i} = compute({i})" for i in range(80)]
        code = "```\n" + "\n".join(lines) + "\n```"
        chunks = chunk_document(doc_of((("A",), code)), max_chars=300, overlap_chars=50)
        assert all(len(c.text) <= 300 for c in chunks)
        got = {line.strip() for c in chunks for line in c.text.split("\n")}
        assert {line.strip() for line in lines} <= got

    def test_blank_lines_inside_code_do_not_split_it(self) -> None:
        """Blank lines inside a fence do not end the block."""
        code = "~~~\na = 1\n\n\nb = 2\n~~~"
        [chunk] = chunk_document(doc_of((("A",), f"Before.\n\n{code}\n\nAfter.")), max_chars=200)
        assert code in chunk.text


class TestOverlap:
    def test_consecutive_chunks_share_whole_trailing_sentences(self) -> None:
        """The next chunk begins with whole trailing sentences of the previous one, within overlap_chars."""
        text = sentences(80, words=5)
        chunks = chunk_document(doc_of((("A",), text)), max_chars=300, overlap_chars=120)
        assert len(chunks) > 3
        for before, after in itertools.pairwise(chunks):
            shared = next(
                n
                for n in range(min(len(before.text), len(after.text)), 0, -1)
                if before.text.endswith(after.text[:n])
            )
            assert 0 < shared <= 120
            assert after.text.startswith("Sentence")
            assert after.text[:shared].endswith(".")

    def test_zero_overlap_partitions_the_text(self) -> None:
        """With overlap_chars=0 the chunks, joined by single spaces, are the text."""
        text = sentences(80, words=5)
        chunks = chunk_document(doc_of((("A",), text)), max_chars=300, overlap_chars=0)
        assert " ".join(texts(chunks)) == text

    def test_no_overlap_across_sections(self) -> None:
        """The first chunk of a section starts at that section's start."""
        chunks = chunk_document(doc_of((("A",), sentences(30)), (("B",), "Fresh start. " + sentences(30))))
        first_b = next(c for c in chunks if c.heading_path == ("B",))
        assert first_b.text.startswith("Fresh start.")

    def test_no_mid_word_overlap_when_there_is_no_sentence_start(self) -> None:
        """Wrapped text without sentence ends gets no overlap rather than a cut word."""
        words = [f"w{i:04d}" for i in range(300)]
        chunks = chunk_document(doc_of((("A",), " ".join(words))), max_chars=100, overlap_chars=50)
        assert [w for c in chunks for w in c.text.split()] == words

    def test_overlap_shrinks_so_the_next_sentence_fits(self) -> None:
        """A long next sentence leaves room by taking less overlap; no chunk exceeds max_chars."""
        text = "Short one. Tiny two. " + "Long " + "y" * 180 + " end. " + "Long " + "z" * 180 + " end."
        chunks = chunk_document(doc_of((("A",), text)), max_chars=200, overlap_chars=150)
        assert all(len(c.text) <= 200 for c in chunks)
        assert all(re.match(r"(Short|Tiny|Long)", c.text) for c in chunks)


class TestArguments:
    @pytest.mark.parametrize(("max_chars", "overlap_chars"), [(0, 0), (100, -1), (100, 100), (100, 150)])
    def test_invalid_sizes_are_rejected(self, max_chars: int, overlap_chars: int) -> None:
        """max_chars must be positive and overlap_chars in [0, max_chars)."""
        with pytest.raises(ValueError, match="_chars"):
            chunk_document(doc_of((("A",), "x")), max_chars=max_chars, overlap_chars=overlap_chars)

    def test_max_chars_of_one_still_works(self) -> None:
        """The smallest size cuts every character apart and skips whitespace."""
        assert texts(chunk_document(doc_of((("A",), "ab c")), max_chars=1, overlap_chars=0)) == [
            "a",
            "b",
            "c",
        ]


class TestScale:
    def test_megabytes_of_one_paragraph(self) -> None:
        """A 3 MB paragraph of sentences chunks within bounds (and in linear time: this test stays fast)."""
        text = sentences(3 * 1024 * 1024 // 60, words=6)
        chunks = chunk_document(doc_of((("A",), text)))
        assert all(0 < len(c.text) <= 1000 for c in chunks)
        assert chunks[-1].text.endswith(text[-50:])

    def test_megabytes_of_tiny_paragraphs_and_fences(self) -> None:
        """A hundred thousand blocks, fence lookalikes and an unclosed fence chunk within bounds."""
        text = "x\n\n" * 100_000 + "```a`\n" * 20_000 + "~~~\n" + "y\n\n" * 1000
        chunks = chunk_document(doc_of((("A",), text)))
        assert all(0 < len(c.text) <= 1000 for c in chunks)

    def test_markdown_file_end_to_end(self) -> None:
        """A loaded markdown file chunks into sections' heading paths."""
        data = b"# Guide\n\n## Install\n\n" + b"Run the installer now. " * 100 + b"\n\n## Use\n\nCall it.\n"
        chunks = chunk_document(load_document("guide.md", data), max_chars=500)
        assert {c.heading_path for c in chunks} == {("Guide", "Install"), ("Guide", "Use")}
        assert chunks[-1].text == "Call it."


class TestSpansAndPages:
    def test_char_span_locates_every_chunk_in_the_document_text(self) -> None:
        """doc.text[char_start:char_end] is each chunk's text, across sections and overlapping chunks."""
        long = " ".join(f"Sentence {i} is here." for i in range(200))
        doc = doc_of((("A",), "Short first section."), (("B",), long), (("C",), "Tail."))
        chunks = chunk_document(doc, max_chars=300, overlap_chars=60)
        assert len(chunks) > 5
        assert all(doc.text[c.char_start : c.char_end] == c.text for c in chunks)

    def test_page_of_the_section_is_on_its_chunks(self) -> None:
        """A paged section's chunks carry its page as page_start and page_end; unpaged ones carry None."""
        doc = ParsedDocument("r.pdf", "R", "application/pdf", (Section(("R",), "On page two.", 2),))
        [chunk] = chunk_document(doc)
        assert (chunk.page_start, chunk.page_end) == (2, 2)
        assert chunk_document(doc_of((("A",), "x")))[0].page_start is None

    def test_a_passage_moved_to_another_page_gets_a_new_hash(self) -> None:
        """The page is stored with the chunk, so the same text on another page is another point."""
        on = [ParsedDocument("r.pdf", "R", "application/pdf", (Section(("R",), "Same.", p),)) for p in (1, 2)]
        assert chunk_document(on[0])[0].content_hash != chunk_document(on[1])[0].content_hash

    def test_page_and_span_reach_the_stored_payload(self) -> None:
        """ChunkRecord.payload carries page_start, page_end, char_start and char_end."""
        record = ChunkRecord("t", "d", "r.pdf", "R", ("R",), 0, "x", "h", "v", 3, 4, 10, 11)
        assert {k: record.payload()[k] for k in ("page_start", "page_end", "char_start", "char_end")} == {
            "page_start": 3,
            "page_end": 4,
            "char_start": 10,
            "char_end": 11,
        }
