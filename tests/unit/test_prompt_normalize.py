"""normalize_text (rag/prompts.py) drops exactly the characters its per-character definition drops."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.rag.prompts import _INVISIBLE_CATEGORIES, _KEEP_CONTROLS, _VARIATION_SELECTORS, normalize_text


def reference(text: str) -> str:
    """The definition, one character at a time."""
    text = _VARIATION_SELECTORS.sub("", unicodedata.normalize("NFKC", text))
    return "".join(
        c for c in text if c in _KEEP_CONTROLS or unicodedata.category(c) not in _INVISIBLE_CATEGORIES
    )


HOSTILE = st.text(
    st.one_of(
        st.characters(codec=None),  # any code point, lone surrogates included
        st.sampled_from(
            "\n\t\r\x00\x7f\u200b\u200d\u202e\u2066\ufe0f\ufeff\U000e0041\U000e0100\ue000\uff1c\ud800\udfff"
        ),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
def test_same_result_as_the_per_character_definition(text: str) -> None:
    """Any text, controls, bidi, tags, private use and surrogates included: identical output."""
    assert normalize_text(text) == reference(text)


def test_plain_text_comes_back_unchanged_and_invisibles_go() -> None:
    """ASCII prose is returned as it is; zero-width and bidi characters are removed, newline and tab kept."""
    prose = "The answer [1] is 42.\nSee\tbelow."
    assert normalize_text(prose) == prose
    assert normalize_text("a\u200bb\u202ec\x00d\n\te\uff1c") == "abcd\n\te<"
