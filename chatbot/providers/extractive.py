"""The offline chat model: an extractive answer quoted from the retrieved passages, with [n] citations.

No language model is involved: the passages are split into sentences (markdown-aware), each sentence is
scored by IDF-weighted overlap of its stemmed terms with the question's (the BM25 analysis, IDF over the
passage set) plus a small bonus for its passage's rank, near-duplicates are dropped, and the best few are
quoted in reading order (passage rank, then position), each ending with its citation.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from chatbot.providers.base import ChatChunk, ChatRequest, Passage, check_options
from chatbot.providers.local_models import TermAnalyzer, bm25_idf
from chatbot.settings import LocalModelSettings

ANSWER_PREFIX = "From the documents (extractive answer, no language model):"
NOT_FOUND = "I could not find this in the documents."

MAX_CODE_LINES = 12  # a fenced block this short may be quoted after the sentence that introduces it
_CODE_WEIGHT = 0.5  # question terms found only in that block count half
_HEADING_WEIGHT = 0.3  # question terms found only in the section's heading count a little
_RANK_BONUS = 0.05  # the top passage's sentences get +0.05, the last one's almost nothing
_RELATIVE_FLOOR = 0.4  # a sentence must score at least this share of the best one
_DUPLICATE_JACCARD = 0.8  # sentences sharing this much of their terms are one sentence
_MIN_WORDS = 3  # shorter fragments ("See below.") are not answers
# Scoring the usual 5 passages of ~800 characters takes ~0.25 ms (measured on the 2-core dev box): inline.
# Past this many characters of passages it moves to a thread so the loop keeps ticking.
_INLINE_CHARS = 20_000

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s+|$)")
_CLOSING_HASHES = re.compile(r"\s+#+\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?")
_QUOTE = re.compile(r"^\s{0,3}>\s?")
_TABLE_ROW = re.compile(r"^\s*\|")
_HTML_LINE = re.compile(r"^\s*<[^>]+>\s*$")
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(\s+)")
_OPENERS = "\"'([`*_"
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "cf.", "mr.", "mrs.", "ms.", "dr.", "fig.", "no."})


@dataclass(frozen=True, slots=True)
class Span:
    """A sentence of a passage, cleaned of markdown block markers, with a short code block it introduces."""

    text: str
    code: str | None = None
    heading: str = ""  # the nearest heading above it, markers stripped


@dataclass(frozen=True, slots=True)
class Pick:
    """A sentence chosen for the answer."""

    rank: int  # position of its passage in the request (0 = best retrieved)
    position: int  # position of the sentence in its passage
    n: int  # citation number
    text: str
    code: str | None
    score: float


# -- splitting -------------------------------------------------------------------------------------


def split_sentences(text: str) -> list[Span]:
    """Sentences of a markdown passage.

    Headings, rules, tables and HTML lines are boundaries and never sentences (a heading, its markers
    stripped, becomes the `heading` of the sentences below it); list items and block
    quotes lose their markers; inline code is kept. A fenced block of at most MAX_CODE_LINES lines is
    attached to the sentence just before it; longer blocks and blocks with no sentence before are dropped.
    """
    spans: list[Span] = []
    paragraph: list[str] = []
    fence: str | None = None  # the open fence's characters while inside a fenced block
    code_lines: list[str] = []
    attachable = False  # the last span ends right before this point (no heading or table in between)
    heading = ""
    quoted = False  # the previous line was in a block quote

    def flush() -> None:
        nonlocal attachable
        if paragraph:
            spans.extend(Span(s, heading=heading) for s in _sentences(" ".join(paragraph)))
            paragraph.clear()
            attachable = bool(spans)

    def attach_code(closing: str) -> None:
        nonlocal attachable
        body = code_lines[1:]
        if attachable and body and len(body) <= MAX_CODE_LINES and spans[-1].code is None:
            spans[-1] = Span(spans[-1].text, "\n".join([*code_lines, closing]), spans[-1].heading)
        code_lines.clear()
        attachable = False

    for line in text.splitlines():
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                attach_code(stripped)
                fence = None
            else:
                code_lines.append(line)
            continue
        opened = _FENCE.match(line)
        if opened:
            flush()
            fence = opened.group(1)
            code_lines.append(line.strip())
            continue
        if not line.strip():
            flush()
            continue
        if _SETEXT_UNDERLINE.match(line) and len(paragraph) == 1:
            heading = paragraph.pop()  # "Title\n=====": a heading
            attachable = False
            continue
        marker = _HEADING.match(line)
        if marker:
            flush()
            heading = _CLOSING_HASHES.sub("", line[marker.end() :]).strip()
            attachable = False
            continue
        if _RULE.match(line) or _TABLE_ROW.match(line) or _HTML_LINE.match(line):
            flush()
            attachable = False
            continue
        quote = _QUOTE.match(line)
        if quote:
            line = line[quote.end() :]
        if bool(quote) != quoted:
            flush()  # a block quote starts or ends: a new unit
            quoted = bool(quote)
        item = _LIST_ITEM.match(line)
        if item:
            flush()
            line = line[item.end() :]
        paragraph.append(line.strip())
    if fence is not None:
        attach_code(fence)  # a chunk cut inside a fence: quote what is there, closed
    flush()
    return spans


def _sentences(paragraph: str) -> list[str]:
    """Split running text after . ! ? followed by space and a capital, digit or opener; not after e.g."""
    found: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(paragraph):
        after = paragraph[match.end() : match.end() + 2]
        if not after or not (after[0].isupper() or after[0].isdigit() or after[0] in _OPENERS):
            continue
        words = paragraph[start : match.start(1)].split()
        last = words[-1].lower() if words else ""
        if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
            continue
        found.append(paragraph[start : match.start(1)].strip())
        start = match.end()
    found.append(paragraph[start:].strip())
    return [s for s in found if s]


# -- scoring ---------------------------------------------------------------------------------------


def select_sentences(
    question: str, passages: Sequence[Passage], limit: int, analyzer: TermAnalyzer
) -> list[Pick]:
    """The best `limit` sentences for the question, in reading order; [] when nothing matches."""
    wanted = set(analyzer.terms(question))
    if not wanted or not passages:
        return []
    candidates: list[tuple[int, int, Passage, Span, set[str], set[str], set[str]]] = []
    document_terms: list[set[str]] = []
    for rank, passage in enumerate(passages):
        seen: set[str] = set()
        for position, span in enumerate(split_sentences(passage.text)):
            terms = set(analyzer.terms(span.text))
            code_terms = set(analyzer.terms(span.code)) - terms if span.code else set()
            heading_terms = set(analyzer.terms(span.heading)) - terms - code_terms
            seen |= terms | code_terms | heading_terms
            if len(span.text.split()) >= _MIN_WORDS or span.code:
                candidates.append((rank, position, passage, span, terms, code_terms, heading_terms))
        document_terms.append(seen)

    total = len(passages)
    idf = {t: bm25_idf(total, sum(t in terms for terms in document_terms)) for t in wanted}
    possible = sum(idf.values())
    scored: list[tuple[float, Pick, set[str]]] = []
    for rank, position, passage, span, terms, code_terms, heading_terms in candidates:
        if not wanted & (terms | code_terms):
            continue  # a heading alone does not make a sentence an answer
        coverage = sum(idf[t] for t in wanted & terms)
        coverage += _CODE_WEIGHT * sum(idf[t] for t in wanted & code_terms)
        coverage += _HEADING_WEIGHT * sum(idf[t] for t in wanted & heading_terms)
        score = coverage / possible + _RANK_BONUS * (total - rank) / total
        pick = Pick(rank, position, passage.n, span.text, span.code, score)
        scored.append((score, pick, terms | code_terms))
    if not scored:
        return []

    scored.sort(key=lambda item: (-item[0], item[1].rank, item[1].position))
    floor = scored[0][0] * _RELATIVE_FLOOR
    chosen: list[tuple[Pick, set[str]]] = []
    for score, pick, terms in scored:
        if score < floor or len(chosen) == limit:
            break
        if any(_similar(terms, other) or _same_text(pick.text, kept.text) for kept, other in chosen):
            continue
        chosen.append((pick, terms))
    return sorted((pick for pick, _ in chosen), key=lambda p: (p.rank, p.position))


def _similar(a: set[str], b: set[str]) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= _DUPLICATE_JACCARD


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


# -- composing -------------------------------------------------------------------------------------


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


# -- the model -------------------------------------------------------------------------------------


# Deterministic already, so a seed is honoured; stop sequences and max_tokens cut the answer (finish_reason
# "stop" / "length" as OpenAI defines them). Tools, response formats and tool messages cannot be honoured.
SUPPORTED_OPTIONS = frozenset({"stop", "seed"})


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


class ExtractiveChatModel:
    """ChatModel that answers from the passages alone: no API key, no network, deterministic."""

    max_context_tokens: int = 1_000_000  # it reads passages, it has no context window

    def __init__(self, settings: LocalModelSettings, *, analyzer: TermAnalyzer | None = None) -> None:
        self.name = "extractive"
        self._sentences = settings.extractive_sentences
        self._analyzer = analyzer or TermAnalyzer()

    def answer(self, request: ChatRequest) -> str:
        """The whole answer text (synchronous, CPU only)."""
        picks = select_sentences(request.question, request.passages, self._sentences, self._analyzer)
        return compose_answer(picks)

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer in word-sized pieces, yielding to the loop between them; usage at the end.
        A piece is a token here: max_tokens counts pieces."""
        check_options(request, self.name, SUPPORTED_OPTIONS)
        if sum(len(p.text) for p in request.passages) > _INLINE_CHARS:
            text = await asyncio.to_thread(self.answer, request)
        else:
            text = self.answer(request)
        text, finish_reason = truncate(text, request.options.stop, request.max_tokens)
        sent = pieces(text)
        for piece in sent:
            yield ChatChunk(delta=piece)
            await asyncio.sleep(0)
        prompt_tokens = count_words(request.question) + sum(count_words(p.text) for p in request.passages)
        yield ChatChunk(finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=len(sent))
