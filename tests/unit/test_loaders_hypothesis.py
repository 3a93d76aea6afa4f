"""Property-based: hostile bytes only ever raise our errors; chunks always keep their contract."""

from __future__ import annotations

import functools
import io
from collections import defaultdict
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from chatbot.errors import PayloadTooLarge, UnreadableDocument, UnsupportedMediaType
from chatbot.ingest.chunking import Chunk, chunk_document
from chatbot.ingest.loaders import SUPPORTED_SUFFIXES, ParsedDocument, Section, load_document
from tests.fakes import documents

# Examples are small; too_slow is suppressed only so a loaded CI machine does not fail the health check.
FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
PROPERTIES = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
OUR_ERRORS = (PayloadTooLarge, UnsupportedMediaType, UnreadableDocument)


@functools.cache
def tiny_pdf() -> bytes:
    """A valid two-page PDF with text, built once (bytes are immutable, so sharing is safe)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in ("Hello PDF world.", "Second page."):
        page = writer.add_blank_page(width=200, height=200)
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 10 100 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    writer.add_metadata({"/Title": "Tiny"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@st.composite
def damaged_pdfs(draw: st.DrawFn) -> bytes:
    """The tiny PDF truncated, or with a run of its bytes overwritten."""
    data = tiny_pdf()
    start = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        return data[:start]
    patch = draw(st.binary(min_size=1, max_size=32))
    return data[:start] + patch + data[start + len(patch) :]


@functools.cache
def office_files() -> tuple[tuple[str, bytes], ...]:
    """One small generated file of each ZIP-based format, built once."""
    return (
        ("d.docx", documents.docx()),
        ("d.pptx", documents.pptx()),
        ("d.xlsx", documents.xlsx()),
        ("d.epub", documents.epub()),
    )


@st.composite
def damaged_office_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A generated office file or e-book, truncated or with a run of its bytes overwritten."""
    name, data = draw(st.sampled_from(office_files()))
    start = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        return name, data[:start]
    patch = draw(st.binary(min_size=1, max_size=32))
    return name, data[:start] + patch + data[start + len(patch) :]


MARKUP = "<>/#`~-=*_|![]()&;:.!?\"' \t\n\r\x00\x0c\u00e9\u2028abcPDF%"
text_like = st.text(alphabet=st.sampled_from(MARKUP) | st.characters(codec="utf-8"), max_size=400)
payloads = st.one_of(
    st.binary(max_size=600),
    text_like.map(str.encode),
    text_like.map(lambda s: s.encode("utf-16")),
    st.binary(max_size=300).map(lambda b: b"%PDF-1.4\n" + b),
    st.binary(max_size=200).map(lambda b: b"<html><title>" + b + b"</title><h1>" + b + b"</h1>" + b),
)


class TestHostileBytes:
    @FUZZ
    @given(suffix=st.sampled_from(sorted(SUPPORTED_SUFFIXES)), data=payloads)
    def test_any_bytes_with_any_supported_suffix(self, suffix: str, data: bytes) -> None:
        """Arbitrary content either loads into non-empty sections or raises one of our three errors."""
        try:
            doc = load_document("upload" + suffix, data)
        except OUR_ERRORS:
            return
        assert doc.sections
        assert doc.title
        assert all(section.heading_path and section.text.strip() for section in doc.sections)

    @FUZZ
    @given(data=damaged_pdfs())
    def test_damaged_pdfs(self, data: bytes) -> None:
        """Truncated or patched PDFs load or fail as UnreadableDocument / PayloadTooLarge, nothing else."""
        try:
            doc = load_document("damaged.pdf", data)
        except (UnreadableDocument, PayloadTooLarge):
            return
        assert all(section.heading_path[0] == doc.title for section in doc.sections)

    @FUZZ
    @given(file=damaged_office_files())
    def test_damaged_office_files(self, file: tuple[str, bytes]) -> None:
        """Truncated or patched docx/pptx/xlsx/epub files load or fail with one of our errors, nothing else."""
        name, data = file
        try:
            doc = load_document(name, data)
        except OUR_ERRORS:
            return
        assert all(section.heading_path and section.text.strip() for section in doc.sections)


words = st.text(alphabet="abcdefghijXYZ0123456789.,!?'\"()-_*#`~\u00e9\u2026", min_size=1, max_size=12)
long_words = st.text(alphabet="qrstuvw", min_size=40, max_size=700)
prose_lines = st.lists(st.one_of(words, words, words, long_words), min_size=1, max_size=30).map(" ".join)
md_lines = st.one_of(
    prose_lines,
    prose_lines,
    st.builds(lambda level, text: "#" * level + " " + text, st.integers(1, 7), prose_lines),
    st.sampled_from(["", "", "```", "~~~", "````", "```python", "   ```", "---", "===", "- item", "1. one"]),
    st.builds(lambda text: "    " + text, prose_lines),
)
markdown_docs = st.lists(md_lines, max_size=40).map("\n".join)


@st.composite
def sizes(draw: st.DrawFn) -> tuple[int, int]:
    max_chars = draw(st.integers(min_value=8, max_value=400))
    return max_chars, draw(st.integers(min_value=0, max_value=max_chars - 1))


def check_chunks(doc: ParsedDocument, chunks: list[Chunk], max_chars: int) -> None:
    """The contract: bounded, non-empty, numbered, inside one section, covering every word."""
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    by_path: defaultdict[tuple[str, ...], list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        assert 0 < len(chunk.text) <= max_chars
        assert chunk.text == chunk.text.strip()
        assert any(
            chunk.text in section.text
            for section in doc.sections
            if section.heading_path == chunk.heading_path
        )
        by_path[chunk.heading_path].append(chunk)
    for section in doc.sections:
        mine = by_path[section.heading_path]
        tokens = {token for chunk in mine for token in chunk.text.split()}
        joined = "".join(chunk.text for chunk in mine)
        for word in section.text.split():
            # Only a word longer than max_chars may be cut, and then its pieces follow each other.
            assert word in tokens or (len(word) > max_chars and word in joined), word


class TestChunkProperties:
    @PROPERTIES
    @given(text=markdown_docs, size=sizes())
    def test_markdown_chunks_keep_the_contract(self, text: str, size: tuple[int, int]) -> None:
        """Arbitrary markdown gives bounded, non-empty, numbered chunks that cover every section word."""
        max_chars, overlap_chars = size
        try:
            doc = load_document("fuzz.md", text.encode())
        except UnreadableDocument:  # only headings, front matter or blank lines: nothing to chunk
            return
        chunks = chunk_document(doc, max_chars=max_chars, overlap_chars=overlap_chars)
        check_chunks(doc, chunks, max_chars)
        assert chunk_document(doc, max_chars=max_chars, overlap_chars=overlap_chars) == chunks

    @PROPERTIES
    @given(
        bodies=st.lists(st.text(max_size=600), min_size=1, max_size=4),
        size=sizes(),
    )
    def test_arbitrary_unicode_sections(self, bodies: list[str], size: tuple[int, int]) -> None:
        """Any Unicode section text (odd whitespace, controls, fences) still meets the chunk contract."""
        max_chars, overlap_chars = size
        doc = ParsedDocument(
            source="s",
            title="T",
            media_type="text/plain",
            sections=tuple(Section(("T", str(i)), body) for i, body in enumerate(bodies)),
        )
        chunks = chunk_document(doc, max_chars=max_chars, overlap_chars=overlap_chars)
        check_chunks(doc, chunks, max_chars)
        assert bool(chunks) == any(body.strip() for body in bodies)
