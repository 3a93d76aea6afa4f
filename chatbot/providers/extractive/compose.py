"""The extractive answer's text: cited sentences in paragraphs, word-sized pieces, stop and length cuts."""

from __future__ import annotations

import re
from collections.abc import Sequence

from chatbot.providers.extractive.select import Pick

ANSWER_PREFIX = "From the documents (extractive answer, no language model):"
NOT_FOUND = "I could not find this in the documents."


def cite(sentence: str, n: int) -> str:
    """End a sentence with its citation: "... over websocket [2]." (before a final . ! ? or :)."""
    text = sentence.rstrip()
    marker = f"[{n}]"
    if text and text[-1] in ".!?:":
        return f"{text[:-1].rstrip()} {marker}{text[-1]}"
    if text and text[-1] in ",;":
        return f"{text[:-1].rstrip()} {marker}."
    if re.search(r"[.!?][\"')\]]+$", text):
        return f"{text} {marker}"
    return f"{text} {marker}."


def compose_answer(picks: Sequence[Pick]) -> str:
    """The answer text: the prefix, then the sentences with citations; one paragraph per passage."""
    if not picks:
        return NOT_FOUND
    paragraphs: list[str] = []
    current: list[str] = []
    previous_rank: int | None = None
    for pick in picks:
        if current and pick.rank != previous_rank:
            paragraphs.append(" ".join(current))
            current = []
        current.append(cite(pick.text, pick.n))
        if pick.code:
            paragraphs.append(" ".join(current))
            paragraphs.append(pick.code)
            current = []
        previous_rank = pick.rank
    if current:
        paragraphs.append(" ".join(current))
    return ANSWER_PREFIX + "\n\n" + "\n\n".join(paragraphs)


def count_words(text: str) -> int:
    """Whitespace-separated words: the extractive model's idea of a token."""
    return len(text.split())


_PIECE = re.compile(r"\s*\S+")


def pieces(text: str) -> list[str]:
    """Word-sized pieces whose concatenation is the text (whitespace travels with the next word)."""
    found = _PIECE.findall(text)
    tail = text[sum(len(p) for p in found) :]
    if tail:
        found.append(tail)
    return found


def truncate(text: str, stop: Sequence[str], max_tokens: int | None) -> tuple[str, str]:
    """(the text up to, not including, the first stop sequence and at most max_tokens pieces,
    finish_reason): "length" when max_tokens cut it, else "stop"."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    text = text[:cut]
    if max_tokens is not None:
        kept = pieces(text)
        if len(kept) > max_tokens:
            return "".join(kept[:max_tokens]), "length"
    return text, "stop"
