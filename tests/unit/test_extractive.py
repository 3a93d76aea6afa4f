"""The extractive chat model: markdown-aware sentence splitting, scoring, citations and streaming."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from chatbot.providers.base import ChatChunk, ChatModel, ChatRequest, Passage
from chatbot.providers.extractive import (
    ANSWER_PREFIX,
    MAX_CODE_LINES,
    NOT_FOUND,
    ExtractiveChatModel,
    Span,
    cite,
    compose_answer,
    count_words,
    pieces,
    select_sentences,
    split_sentences,
)
from chatbot.providers.local_models import TermAnalyzer
from chatbot.settings import LocalModelSettings

STREAMING = """## Streaming over a websocket

Connect to `/v1/ws` and send an `ask` frame. The server streams `token` frames as the model writes them,
e.g. one per few words. Every frame carries a `message_id` and a `seq`.

For example:

```python
async with websockets.connect("ws://localhost:8000/v1/ws") as ws:
    await ws.send(json.dumps({"type": "ask", "message": "hi"}))
```

- Send `stop` to cancel an answer;
- Send `resume` with the last `seq` you saw
"""

RESUMING = """# Resuming
If the connection drops, reconnect and send a resume frame with the last seq you saw. The server replays
the answer's events from there."""

UPLOADS = """Uploads accept markdown, HTML, PDF and plain text files. The largest upload is 20 MB."""


@pytest.fixture(scope="module")
def analyzer() -> TermAnalyzer:
    return TermAnalyzer()


@pytest.fixture(scope="module")
def model() -> ExtractiveChatModel:
    return ExtractiveChatModel(LocalModelSettings())


def request(question: str, *texts: str) -> ChatRequest:
    passages = [Passage(n=i + 1, text=text, title=f"doc {i + 1}") for i, text in enumerate(texts)]
    return ChatRequest(messages=[], question=question, passages=passages)


async def collect(model: ExtractiveChatModel, req: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in model.stream_reply(req)]


class TestSplitSentences:
    def test_splits_running_text(self) -> None:
        """Sentences end at . ! ? followed by a capital; lines of a paragraph are joined."""
        assert split_sentences("One line.\nSame para! Next one? Yes") == [
            Span("One line."),
            Span("Same para!"),
            Span("Next one?"),
            Span("Yes"),
        ]

    def test_abbreviations_and_numbers_do_not_split(self) -> None:
        """e.g., i.e., initials, versions and lowercase continuations stay in one sentence."""
        text = "Use a client, e.g. Chrome. See J. Smith on v1.2 today. It works. the end"
        assert [s.text for s in split_sentences(text)] == [
            "Use a client, e.g. Chrome.",
            "See J. Smith on v1.2 today.",
            "It works. the end",
        ]

    def test_headings_are_context_not_sentences(self) -> None:
        """ATX and setext headings never become sentences; their text, markers stripped, is the heading."""
        spans = split_sentences("## Install ##\nRun pip.\n\nUsage\n=====\nCall it.")
        assert spans == [Span("Run pip.", heading="Install"), Span("Call it.", heading="Usage")]

    def test_list_items_and_quotes_lose_markers(self) -> None:
        """List bullets, numbers, task boxes and quote markers are stripped; each item is a unit."""
        spans = split_sentences("- first item\n  continues here\n2. second\n* [x] done\n> quoted text")
        assert [s.text for s in spans] == ["first item continues here", "second", "done", "quoted text"]

    def test_rules_and_html_are_dropped_table_rows_named_by_column(self) -> None:
        """Rules and lone HTML tags produce nothing; a table's data row is one sentence naming its columns."""
        text = "Intro.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n---\n<details>\nOutro."
        assert [s.text for s in split_sentences(text)] == ["Intro.", "a: 1; b: 2", "Outro."]

    def test_inline_code_is_kept(self) -> None:
        """Inline code survives splitting verbatim."""
        assert split_sentences("Call `client.stop()` now. Done.")[0].text == "Call `client.stop()` now."

    def test_short_code_block_attaches_to_preceding_sentence(self) -> None:
        """A fenced block of at most MAX_CODE_LINES lines is attached to the sentence before it."""
        spans = split_sentences("Run this:\n\n```bash\npip install chatbot\n```\nThen go.")
        assert spans[0] == Span("Run this:", code="```bash\npip install chatbot\n```")
        assert spans[1] == Span("Then go.")

    def test_long_code_block_is_dropped(self) -> None:
        """A block longer than MAX_CODE_LINES is not quoted and its lines are not sentences."""
        body = "\n".join(f"line {i}." for i in range(MAX_CODE_LINES + 1))
        assert split_sentences(f"Code:\n```\n{body}\n```") == [Span("Code:")]

    def test_code_after_heading_is_not_attached(self) -> None:
        """A block under a new heading does not belong to the previous section's sentence."""
        spans = split_sentences("Before.\n\n## Other\n```\nx = 1\n```")
        assert spans == [Span("Before.")]

    def test_unclosed_fence_is_closed(self) -> None:
        """A chunk cut inside a fence quotes what is there and closes the fence."""
        spans = split_sentences("Example:\n~~~\nx = 1")
        assert spans == [Span("Example:", code="~~~\nx = 1\n~~~")]


class TestCite:
    @pytest.mark.parametrize(
        ("sentence", "expected"),
        [
            ("Tokens stream over websocket.", "Tokens stream over websocket [2]."),
            ("Does it stream?", "Does it stream [2]?"),
            ("Run this:", "Run this [2]:"),
            ("Send stop to cancel;", "Send stop to cancel [2]."),
            ("no punctuation", "no punctuation [2]."),
            ('He said "stop."', 'He said "stop." [2]'),
        ],
    )
    def test_citation_goes_before_final_punctuation(self, sentence: str, expected: str) -> None:
        """The citation sits before a final . ? ! or :, and a sentence always ends terminated."""
        assert cite(sentence, 2) == expected


class TestSelectSentences:
    def test_picks_matching_sentences_in_reading_order(self, analyzer: TermAnalyzer) -> None:
        """Relevant sentences are chosen and returned by passage rank, then position."""
        picks = select_sentences(
            "How do I resume after the connection drops?",
            [Passage(1, STREAMING), Passage(2, RESUMING), Passage(3, UPLOADS)],
            4,
            analyzer,
        )
        assert [p.n for p in picks] == sorted(p.n for p in picks)
        assert any(p.text.startswith("If the connection drops") for p in picks)
        assert all(p.n != 3 for p in picks)

    def test_limit_is_respected(self, analyzer: TermAnalyzer) -> None:
        """At most `limit` sentences are chosen."""
        text = " ".join(f"Streaming tip number {i} is useful." for i in range(10))
        assert len(select_sentences("streaming tips", [Passage(1, text)], 3, analyzer)) == 3

    def test_rarer_terms_weigh_more(self, analyzer: TermAnalyzer) -> None:
        """A term found in one passage outweighs a term found in every passage (IDF over the set)."""
        passages = [
            Passage(1, "The server handles every request quickly."),
            Passage(2, "The server uses websocket frames for streaming."),
            Passage(3, "The server logs each request."),
        ]
        picks = select_sentences("server websocket", passages, 1, analyzer)
        assert [p.n for p in picks] == [2]

    def test_near_duplicates_are_dropped(self, analyzer: TermAnalyzer) -> None:
        """The same sentence in two overlapping chunks is quoted once, from the better-ranked passage."""
        sentence = "The websocket endpoint streams tokens to the browser."
        picks = select_sentences(
            "websocket tokens", [Passage(1, sentence), Passage(2, sentence + " ")], 4, analyzer
        )
        assert [(p.n, p.text) for p in picks] == [(1, sentence)]

    def test_passage_rank_breaks_ties(self, analyzer: TermAnalyzer) -> None:
        """Between equally matching sentences, the better-ranked passage wins."""
        passages = [
            Passage(7, "Websocket frames carry tokens here."),
            Passage(3, "Websocket frames carry tokens there."),
        ]
        assert [p.n for p in select_sentences("websocket tokens", passages, 1, analyzer)] == [7]

    def test_code_terms_can_select_the_introducing_sentence(self, analyzer: TermAnalyzer) -> None:
        """A sentence whose attached code block matches the question is selected with its code."""
        picks = select_sentences("websocket example", [Passage(1, STREAMING)], 4, analyzer)
        assert any(p.text == "For example:" and p.code and "websockets.connect" in p.code for p in picks)

    def test_no_overlap_selects_nothing(self, analyzer: TermAnalyzer) -> None:
        """A question sharing no term with the passages selects nothing."""
        assert select_sentences("banana prices", [Passage(1, STREAMING)], 4, analyzer) == []

    def test_stopword_only_question_selects_nothing(self, analyzer: TermAnalyzer) -> None:
        """A question made only of stopwords has no terms to match."""
        assert select_sentences("what is it?", [Passage(1, STREAMING)], 4, analyzer) == []


class TestCompose:
    def test_not_found_text(self) -> None:
        """No picks: the plain not-found sentence with no citation."""
        assert compose_answer([]) == NOT_FOUND
        assert "[" not in NOT_FOUND

    def test_pieces_rebuild_the_text(self) -> None:
        """Word-sized pieces concatenate back to the exact text, whitespace included."""
        text = "  Two words\n\n```\ncode  here\n```  "
        assert "".join(pieces(text)) == text
        assert all(len(p.split()) <= 1 for p in pieces(text))

    def test_count_words(self) -> None:
        """Tokens are whitespace-separated words."""
        assert count_words(" a  b\nc ") == 3


class TestStreamReply:
    def test_satisfies_protocol(self, model: ExtractiveChatModel) -> None:
        """ExtractiveChatModel is a ChatModel named "extractive" with a large context."""
        assert isinstance(model, ChatModel)
        assert model.name == "extractive"
        assert model.max_context_tokens >= 1_000_000

    async def test_answer_is_prefixed_cited_and_streamed(self, model: ExtractiveChatModel) -> None:
        """The answer says it is extractive, cites [n] per sentence and arrives in word-sized pieces."""
        req = request("How do I resume after the connection drops?", STREAMING, RESUMING, UPLOADS)
        chunks = await collect(model, req)
        text = "".join(c.delta for c in chunks)
        assert text.startswith(ANSWER_PREFIX + "\n\n")
        assert (
            "If the connection drops, reconnect and send a resume frame with the last seq you saw [2]."
            in text
        )
        assert "[3]" not in text
        assert len(chunks) > 10
        assert all(c.finish_reason is None for c in chunks[:-1])

    async def test_final_chunk_carries_usage(self, model: ExtractiveChatModel) -> None:
        """The last chunk is empty with finish_reason stop and word counts as token counts."""
        req = request("resume after a drop", RESUMING)
        chunks = await collect(model, req)
        text = "".join(c.delta for c in chunks)
        last = chunks[-1]
        assert (last.delta, last.finish_reason) == ("", "stop")
        assert last.prompt_tokens == count_words(req.question) + count_words(RESUMING)
        assert last.completion_tokens == count_words(text)

    async def test_no_passages_says_not_found(self, model: ExtractiveChatModel) -> None:
        """With no passages the answer is the not-found sentence, citing nothing."""
        chunks = await collect(model, request("How do I resume?"))
        assert "".join(c.delta for c in chunks) == NOT_FOUND
        assert chunks[-1].finish_reason == "stop"

    async def test_unrelated_question_says_not_found(self, model: ExtractiveChatModel) -> None:
        """A question the passages do not touch gets the not-found sentence."""
        chunks = await collect(model, request("What do bananas cost?", STREAMING, UPLOADS))
        assert "".join(c.delta for c in chunks) == NOT_FOUND

    async def test_yields_to_the_loop_between_pieces(self, model: ExtractiveChatModel) -> None:
        """Another task runs between pieces: the stream never hogs the loop."""
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        try:
            chunks = await collect(model, request("How do I resume?", RESUMING))
        finally:
            task.cancel()
        assert ticks >= len(chunks) - 2

    async def test_early_close_is_clean(self, model: ExtractiveChatModel) -> None:
        """A consumer may stop after the first piece; closing the stream raises nothing."""
        async with aclosing(model.stream_reply(request("How do I resume?", RESUMING))) as stream:
            async for chunk in stream:
                assert chunk.delta
                break

    async def test_large_passage_sets_still_answer(self, model: ExtractiveChatModel) -> None:
        """Past the inline limit the scoring runs in a thread and the answer is the same."""
        texts = [RESUMING + " " + UPLOADS * 40 for _ in range(8)]
        req = request("How do I resume after the connection drops?", *texts)
        chunks = await collect(model, req)
        assert "".join(c.delta for c in chunks) == await model.answer(req)
