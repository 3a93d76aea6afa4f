"""Uploaded file names are normalised and bounded before they are stored: no markup, control characters or
path parts, at most MAX_FILENAME_CHARS characters with the extension kept, never empty."""

from __future__ import annotations

import unicodedata

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.ingest.filenames import FALLBACK_STEM, MAX_FILENAME_CHARS, safe_filename
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services

FORBIDDEN = set("<>\"'`&/\\:*?|") | {"\x00", "\n", "\r", "\t"}


def assert_clean(name: str) -> None:
    assert name, "empty name"
    assert len(name) <= MAX_FILENAME_CHARS, len(name)
    assert not FORBIDDEN & set(name), name
    assert all(unicodedata.category(c)[0] not in "CZ" or c == " " for c in name), ascii(name)
    assert name[0] not in " ._-", name
    assert name[-1] not in " ._-", name
    assert unicodedata.normalize("NFKC", name) == name


class TestSafeFilename:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("notes.md", "notes.md"),
            ("Release notes 2024.PDF", "Release notes 2024.PDF"),
            ("../../etc/passwd.md", "passwd.md"),
            ("C:\\Users\\me\\report.txt", "report.txt"),
            ("<script>alert(1)</script>.md", "script.md"),  # the / makes everything before it a path part
            ("<b>bold<i>.md", "b_bold_i.md"),
            ('<img src=x onerror="alert(1)">.html', "img src=x onerror=_alert(1).html"),
            ("\uff1cb\uff1ebold\uff0fname.md", "name.md"),  # full-width < > / after NFKC
            ("a\u200bb\u202ec\u0000d.md", "abcd.md"),  # zero-width, bidi override, NUL
            ("   spaced    out   .md", "spaced out.md"),
            ("...hidden.md", "hidden.md"),
            ("<>.md", f"{FALLBACK_STEM}.md"),
            ("", FALLBACK_STEM),
            ("/", FALLBACK_STEM),
            ("..", FALLBACK_STEM),
            ("résumé 東京.txt", "résumé 東京.txt"),
            ("\ufb01le.md", "file.md"),  # a ligature
        ],
    )
    def test_examples(self, raw: str, expected: str) -> None:
        """Path parts, markup, invisible characters and whitespace runs go; readable names stay."""
        assert safe_filename(raw) == expected

    def test_long_names_are_bounded_keeping_the_extension(self) -> None:
        """5,000 characters of markup become MAX_FILENAME_CHARS at most, still ending in the extension."""
        name = safe_filename("<b>" * 1250 + "x" * 1250 + ".pdf")
        assert len(name) <= MAX_FILENAME_CHARS
        assert name.endswith(".pdf")
        assert_clean(name)

    def test_a_long_extension_is_not_an_extension(self) -> None:
        """A 'suffix' longer than an extension is cut like the rest of the name."""
        name = safe_filename("a." + "b" * 500)
        assert len(name) <= MAX_FILENAME_CHARS
        assert_clean(name)

    @settings(max_examples=500, deadline=None)
    @given(st.text(max_size=300) | st.text(alphabet="<>/\\.:&\"' \u200b\uff0f\uff1ca-z", max_size=300))
    def test_any_name_becomes_clean_bounded_and_stable(self, raw: str) -> None:
        """For any string: clean, bounded, non-empty, and normalising again changes nothing."""
        name = safe_filename(raw)
        assert_clean(name)
        assert safe_filename(name) == name

    @settings(max_examples=200, deadline=None)
    @given(st.text(max_size=400), st.sampled_from([".md", ".txt", ".html", ".pdf", ".PDF"]))
    def test_a_supported_extension_survives_any_stem(self, stem: str, ext: str) -> None:
        """Whatever precedes it, a supported extension is kept (the loader picks the format by it)."""
        assert safe_filename(stem + ext).endswith(ext)


class TestServedUpload:
    async def test_hostile_names_are_stored_clean(
        self, offline_providers: Providers, small_store: VectorStore
    ) -> None:
        """Upload with a 5,000-character markup name, a path and an all-markup name: the stored sources are clean."""
        hostile = ["<script>alert(1)</script>" * 200 + ".md", "../../etc/secret notes.md", "<>\u200b.md"]
        async with serve_services(make_settings(), offline_providers, small_store) as (url, _):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                files = [("file", (name, b"# Title\n\nSome text.\n", "text/markdown")) for name in hostile]
                response = await client.post(
                    "/v1/documents", files=files, headers={"X-Chatbot-Tenant": "filenames"}
                )
                assert response.status_code == 201, response.text
                stored = [d["source"] for d in response.json()["documents"]]
                listed = (await client.get("/v1/documents", headers={"X-Chatbot-Tenant": "filenames"})).json()
        assert stored[1] == "secret notes.md"
        assert stored[2] == f"{FALLBACK_STEM}.md"
        for name in stored:
            assert_clean(name)
        assert sorted(d["source"] for d in listed["documents"]) == sorted(stored)
