"""The offline chat model: an extractive answer quoted from the retrieved passages, with [n] citations.

No language model generates anything: the passages are cleaned of boilerplate and split into sentences
(markdown-aware; table rows become "column: value" sentences), each sentence is scored by a blend of
lexical coverage of the question and, when an embedder is given, its dense similarity to the question
(select.py), near-duplicates are dropped, and the best few are quoted in reading order (passage rank,
then position), each ending with its citation.

Cost, in CPU time (2-core dev box shared with other jobs; CPU time survives the load), over the 49
questions of tests/fixtures/answer_pairs.jsonl: lexical scoring alone ~0.65 ms per answer; with sentence
vectors from the LRU (vectors.py) ~0.7 ms per answer once the passages were seen; cold, ~25 ms per answer
on average (at most `budget` = 16 new sentences per answer at ~4.5-8 ms each; 113 sentences embedded over
the 49 answers, the guide's passages recurring). The question is not embedded again: the pipeline passes
the retriever's vector (ChatRequest.query_vector), saving ~3.5 ms. Three options were measured:
- embedding every sentence of the 5 passages per answer: ~15 sentences, ~70-120 ms CPU: far over the
  ~5 ms per turn budget;
- sentence vectors at ingest: the guide's 31 chunks hold 83 sentences; embedding them costs ~650 ms CPU
  next to ~1,240 ms for the chunks (+53% ingest embedding work, 2.7 more vectors stored per chunk, most
  never quoted) and a stored-payload change;
- the LRU with a per-answer budget (kept): popular passages cost nothing after their first answer, the
  cold cost is bounded, and ingestion is unchanged. Budget 8/16/all gave 46/46/46 of 49 cited with a 0.5
  similarity floor; 16 keeps the first citation right as often as all (43).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from chatbot.errors import UpstreamError
from chatbot.providers.base import ChatChunk, ChatRequest, Embedder, check_options
from chatbot.providers.extractive.compose import compose_answer, count_words, pieces, truncate
from chatbot.providers.extractive.select import find_candidates, select
from chatbot.providers.extractive.vectors import Dense, SentenceVectors
from chatbot.providers.local_models import TermAnalyzer
from chatbot.settings import LocalModelSettings

log = logging.getLogger(__name__)

# Deterministic already, so a seed is honoured; stop sequences and max_tokens cut the answer (finish_reason
# "stop" / "length" as OpenAI defines them). Tools, response formats and tool messages cannot be honoured.
SUPPORTED_OPTIONS = frozenset({"stop", "seed"})
# Past this many characters of passages, splitting and scoring move to a thread so the loop keeps ticking.
_INLINE_CHARS = 20_000


class ExtractiveChatModel:
    """ChatModel that answers from the passages alone: no API key, no network (with the local embedder),
    deterministic. With an `embedder`, sentences are also scored by meaning (see select.py)."""

    max_context_tokens: int = 1_000_000  # it reads passages, it has no context window

    def __init__(
        self,
        settings: LocalModelSettings,
        *,
        analyzer: TermAnalyzer | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.name = "extractive"
        self._sentences = settings.extractive_sentences
        self._analyzer = analyzer or TermAnalyzer()
        self.vectors = SentenceVectors(embedder) if embedder is not None else None

    async def answer(self, request: ChatRequest) -> str:
        """The whole answer text."""
        large = sum(len(p.text) for p in request.passages) > _INLINE_CHARS
        if large:
            found = await asyncio.to_thread(find_candidates, request.passages, self._analyzer)
        else:
            found = find_candidates(request.passages, self._analyzer)
        dense: Dense | None = None
        if self.vectors is not None and found.sentences:
            try:
                texts = [c.span.text for c in found.sentences]  # best passage first: the budget goes there
                dense = await self.vectors.lookup(request.question, texts, request.query_vector)
            except UpstreamError:  # the embedder failed: answer from the terms alone rather than not at all
                log.warning("sentence embedding failed; the extractive answer is lexical only", exc_info=True)
        args = (request.question, found, self._sentences, self._analyzer, dense)
        picks = await asyncio.to_thread(select, *args) if large else select(*args)
        return compose_answer(picks)

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer in word-sized pieces, yielding to the loop between them; usage at the end.
        A piece is a token here: max_tokens counts pieces."""
        check_options(request, self.name, SUPPORTED_OPTIONS)
        text, finish_reason = truncate(await self.answer(request), request.options.stop, request.max_tokens)
        sent = pieces(text)
        for piece in sent:
            yield ChatChunk(delta=piece)
            await asyncio.sleep(0)
        prompt_tokens = count_words(request.question) + sum(count_words(p.text) for p in request.passages)
        yield ChatChunk(finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=len(sent))
