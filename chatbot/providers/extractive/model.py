"""The offline chat model: an extractive answer quoted from the retrieved passages, with [n] citations.

No language model generates anything: the passages are cleaned of boilerplate and split into sentences
(markdown-aware; table rows become "column: value" sentences), each sentence is scored by a blend of
lexical coverage of the question and, when an embedder is given, its dense similarity to the question
(select.py), near-duplicates are dropped, and the best few are quoted in reading order (passage rank,
then position), each ending with its citation.

Cost (measured on the 2-core dev box under load from other jobs; CPU time, which survives the load):
lexical scoring of the usual 5 passages of ~800 characters is ~0.3 ms; MiniLM costs ~3.5 ms CPU for the
question and ~4.5 ms per new sentence, so sentence vectors live in an LRU (vectors.py): a passage read
before costs nothing, and a cold answer embeds at most `budget` sentences. Embedding sentences at ingest
instead was rejected: it roughly doubles the embedding work of an ingest (every sentence of every chunk,
most never quoted) and stores ~7 more vectors per chunk.
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
