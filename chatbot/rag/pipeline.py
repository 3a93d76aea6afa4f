"""The use case: one user message in, a stream of typed events out.

    async for event in pipeline.stream_answer(AnswerRequest(...)):
        ...

Stages: load history (and embed the raw question at the same time) -> rewrite a follow-up -> retrieve
(raw and rewritten queries fused in one vector store call) -> rerank (optional) -> confidence (rag/confidence.py:
no source close enough, no sources) -> sources event -> render
prompts -> stream the model's reply as token events -> done. Embedding, retrieval and reranking are the
Retriever's (rag/retriever.py), which the evaluation harness measures. Each stage has its own deadline. Any failure
becomes exactly one error event. The turn is saved on every path: done, stopped (generator closed early or
task cancelled) and error.

Beside the stages: the history read and the turn saved are rag/history.py's; the answer cache's key, lookup,
replay and store are rag/cached_answers.py's; the generate stage's one-timer deadline is rag/stream_deadline.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable

from chatbot.errors import ChatbotError, DeadlineExceeded
from chatbot.events import (
    ChatEvent,
    DoneEvent,
    ErrorEvent,
    SourcesEvent,
    StartEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
)
from chatbot.ops import tracing
from chatbot.providers.base import (
    ChatMessage,
    ChatModel,
    ChatRequest,
    Embedder,
    Passage,
    Reranker,
    SparseEmbedder,
)
from chatbot.rag import cached_answers
from chatbot.rag.answer_request import AnswerRequest
from chatbot.rag.confidence import ConfidenceCheck
from chatbot.rag.followups import fallback_rewrite, looks_like_followup
from chatbot.rag.grouping import group_by_document
from chatbot.rag.history import TurnProgress, load_history, save_turn
from chatbot.rag.prompts import Prompts
from chatbot.rag.retriever import Retriever, elapsed_ms, staged
from chatbot.rag.stream_deadline import StreamDeadline
from chatbot.settings import Settings
from chatbot.stores.base import (
    AnswerCache,
    ConversationStore,
    QueryVectors,
    SearchMode,
    VectorStore,
)
from chatbot.stores.records import CachedAnswer

__all__ = ["AnswerRequest", "Pipeline"]  # AnswerRequest: the input of stream_answer, imported from here

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        embedder: Embedder,
        sparse: SparseEmbedder | None,
        chat: ChatModel,
        store: VectorStore,
        prompts: Prompts,
        conversations: ConversationStore,
        reranker: Reranker | None = None,
        cache: AnswerCache | None = None,
        on_cache_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        self.cache = cache
        self.on_cache_lookup = on_cache_lookup
        self.settings = settings
        self.chat = chat
        self.prompts = prompts
        self.conversations = conversations
        self.retriever = Retriever(
            store=store,
            embedder=embedder,
            sparse=sparse,
            reranker=reranker,
            settings=settings.retrieval,
            deadlines=settings.deadlines,
        )
        self.confidence = ConfidenceCheck(store=store, embedder=embedder, settings=settings.retrieval)

    @property
    def search_mode(self) -> SearchMode:
        return self.retriever.mode

    async def stream_answer(self, req: AnswerRequest) -> AsyncIterator[ChatEvent]:
        progress = TurnProgress()
        saved = False

        async def save(outcome: str, error_code: str | None = None) -> None:
            # before the terminal event goes out: a client's next message must find this turn in the history
            nonlocal saved
            progress.outcome, progress.error_code, saved = outcome, error_code, True
            await save_turn(self.conversations, req, progress)

        try:
            yield StartEvent(message_id=req.message_id, conversation_id=req.conversation_id)
            async with contextlib.aclosing(self._run(req, progress)) as events:
                async for event in events:
                    if isinstance(event, DoneEvent):
                        await save("done")
                    yield event
        except ChatbotError as exc:
            log.info("answer %s failed: %s", req.message_id, exc.code, exc_info=exc.status >= 500)
            await save("error", exc.code)
            param = exc.details.get("param")
            yield ErrorEvent(
                code=exc.code,
                message=exc.message,
                retry_after=exc.retry_after,
                param=param if isinstance(param, str) else None,
            )
        except Exception:
            log.exception("answer %s failed unexpectedly", req.message_id)
            await save("error", "internal_error")
            yield ErrorEvent(code="internal_error", message=ChatbotError.default_message)
        finally:
            if not saved:  # stopped: closed early or cancelled
                await save_turn(self.conversations, req, progress)

    async def _run(self, req: AnswerRequest, progress: TurnProgress) -> AsyncGenerator[ChatEvent, None]:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        limits = self.settings.limits
        deadlines = self.settings.deadlines

        raw_vectors, history, generation = await asyncio.gather(
            self.retriever.embed(req.question, timings),
            load_history(self.conversations, req, limits.max_history_messages),
            self._cache_generation(req.tenant),
        )
        use_cache = self.cache is not None and cached_answers.cacheable(req, history, raw_vectors)
        variant = (  # a JSON dump and a hash: only for an answer the cache may serve or keep
            cached_answers.cache_variant(req, model=self.chat.name, prompts_version=self.prompts.version)
            if use_cache
            else ""
        )
        if use_cache:
            hit = await self._cached(req, generation, variant, raw_vectors, timings)
            if hit is not None:
                async for event in cached_answers.stream_replay(hit, progress.parts):
                    yield event
                timings["total"] = elapsed_ms(started)
                words = _estimate_tokens(progress.parts)
                yield self._done(Usage(0, words), timings, "stop", hit.model, progress, None, cached=True)
                return

        queries = [raw_vectors]
        search_text = req.question
        if history and self.settings.retrieval.rewrite_followups and looks_like_followup(req.question):
            search_text = await self._rewrite(req.question, [m for m in history if _is_text(m)])
            if search_text != req.question:
                queries.append(await self.retriever.embed(search_text, timings))

        hits = await self.retriever.retrieve(req.tenant, queries, search_text, timings, where=req.where)
        relevant = bool(hits) and await staged(
            "confidence",
            self.settings.deadlines.retrieve,
            self.confidence.passes(req.tenant, queries, search_text, where=req.where),
            timings,
        )
        # A citation [n] names a document (and page): rag/grouping.py. Below the confidence threshold the
        # prompt says no source is relevant: the answer declines and cites nothing.
        sources = group_by_document(hits) if relevant else []
        yield SourcesEvent(sources=tuple(sources), no_relevant_sources=not relevant)

        passages = [Passage(n=s.n, text=s.text, title=s.title) for s in sources]
        request = ChatRequest(
            messages=self.prompts.chat_messages(req.question, passages, history),
            question=req.question,
            passages=passages,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            options=req.options,
            continuation=req.continuation,
            query_vector=raw_vectors.dense,
        )
        gen_started = time.perf_counter()
        generate_span = tracing.start(
            f"chat {self.chat.name}",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": self.chat.name,
                "chatbot.stage": "generate",
            },
        )
        first_token_span = tracing.start("chatbot.first_token", {"chatbot.stage": "first_token"})
        usage = Usage()
        finish_reason = "stop"
        answered_by = self.chat.name
        stream = self.chat.stream_reply(request)
        first_deadline = gen_started + deadlines.first_token
        answer_deadline = started + deadlines.answer
        deadline = StreamDeadline(min(first_deadline, answer_deadline))  # one timer per stream
        try:
            while True:
                waiting_first = not progress.parts
                try:
                    chunk = await deadline.next(stream)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    stage = "first_token" if waiting_first and first_deadline <= answer_deadline else "answer"
                    raise DeadlineExceeded(
                        stage, deadlines.first_token if stage == "first_token" else deadlines.answer
                    ) from None
                if chunk.delta:
                    if not progress.parts:
                        timings["first_token"] = elapsed_ms(gen_started)
                        tracing.end(first_token_span)
                        first_token_span = None
                        if first_deadline < answer_deadline:
                            deadline.move(answer_deadline)
                    progress.parts.append(chunk.delta)
                    yield TokenEvent(delta=chunk.delta)
                for call in chunk.tool_calls:
                    yield ToolCallEvent(
                        index=call.index, id=call.id, name=call.name, arguments=call.arguments
                    )
                if chunk.finish_reason:
                    finish_reason = chunk.finish_reason
                if chunk.model:
                    answered_by = chunk.model
                if chunk.prompt_tokens is not None or chunk.completion_tokens is not None:
                    usage = Usage(chunk.prompt_tokens or 0, chunk.completion_tokens or 0)
        except BaseException as exc:  # an error, a stop, or the consumer closing early: the span ends here
            tracing.fail(generate_span, exc)
            raise
        finally:
            deadline.close()
            await stream.aclose()  # type: ignore[attr-defined]  # async generators; closes the upstream stream
            tracing.end(first_token_span)
        timings["generate"] = elapsed_ms(gen_started)
        timings["total"] = elapsed_ms(started)
        if usage.total_tokens == 0:
            usage = Usage(
                _estimate_tokens(m.content for m in request.messages), _estimate_tokens(progress.parts)
            )
        yield self._done(usage, timings, finish_reason, answered_by, progress, generate_span)
        if (
            use_cache
            and cached_answers.shareable(req)
            and sources
            and finish_reason == "stop"
            and self.cache is not None
        ):  # after done: the client does not wait for this
            await cached_answers.store(
                self.cache,
                req,
                generation,
                variant,
                raw_vectors,
                answer="".join(progress.parts),
                sources=sources,
                model=answered_by,
            )

    async def _cache_generation(self, tenant: str) -> str:
        return await self.cache.generation(tenant) if self.cache is not None else ""

    async def _cached(
        self,
        req: AnswerRequest,
        generation: str,
        variant: str,
        vectors: QueryVectors,
        timings: dict[str, float],
    ) -> CachedAnswer | None:
        assert self.cache is not None  # noqa: S101 - checked by the caller
        hit = await cached_answers.lookup(
            self.cache, req, generation, variant, vectors, timings, deadline=self.settings.deadlines.retrieve
        )
        if self.on_cache_lookup is not None:
            self.on_cache_lookup(hit is not None)
        return hit

    def _done(
        self,
        usage: Usage,
        timings: dict[str, float],
        finish_reason: str,
        model: str,
        progress: TurnProgress,
        generate_span: tracing.Span | None,
        *,
        cached: bool = False,
    ) -> DoneEvent:
        """The done event, its usage and finish reason also on the turn's span (and the model call's)."""
        if tracing.enabled():
            attributes: dict[str, str | int | bool | list[str]] = {
                **tracing.usage_attributes(
                    model=model,
                    input_tokens=usage.prompt_tokens,
                    output_tokens=usage.completion_tokens,
                    finish_reason=finish_reason,
                ),
                "chatbot.cached": cached,
            }
            tracing.end(generate_span, attributes)
            if tracing.capture_content():
                attributes["gen_ai.output.messages"] = tracing.messages_attribute(
                    "assistant", "".join(progress.parts)
                )
            tracing.annotate(attributes)
        return DoneEvent(
            usage=usage,
            timings=timings,
            finish_reason=finish_reason,
            model=model,
            cached=cached,
            trace_id=tracing.current_trace_id(),
        )

    async def _rewrite(self, question: str, history: list[ChatMessage]) -> str:
        """A standalone query for a follow-up: through the chat model when it is an LLM, else the fallback."""
        if self.chat.name == "extractive":
            return fallback_rewrite(question, history)
        parts: list[str] = []
        stream = self.chat.stream_reply(
            ChatRequest(
                messages=self.prompts.rewrite_messages(question, history), question=question, max_tokens=64
            )
        )
        try:
            async with asyncio.timeout(self.settings.deadlines.first_token):
                async for chunk in stream:
                    parts.append(chunk.delta)
        except (ChatbotError, TimeoutError) as exc:
            log.info("follow-up rewrite failed (%s); using the fallback", type(exc).__name__)
            return fallback_rewrite(question, history)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        rewritten = " ".join("".join(parts).split())[: self.settings.limits.max_message_chars]
        return rewritten or fallback_rewrite(question, history)


def _is_text(message: ChatMessage) -> bool:
    """A plain user or assistant turn (not a tool call or a tool result)."""
    return message.role in ("user", "assistant") and not message.tool_calls


def _estimate_tokens(texts: Iterable[str]) -> int:
    return sum(len(t.split()) for t in texts)
