"""The use case: one user message in, a stream of typed events out.

    async for event in pipeline.stream_answer(AnswerRequest(...)):
        ...

Stages: load history (and embed the raw question at the same time) -> rewrite a follow-up -> retrieve
(raw and rewritten queries fused in one vector store call) -> rerank (optional) -> sources event -> render
prompts -> stream the model's reply as token events -> done. Embedding, retrieval and reranking are the
Retriever's (rag/retriever.py), which the evaluation harness measures. Each stage has its own deadline. Any failure
becomes exactly one error event. The turn is saved on every path: done, stopped (generator closed early or
task cancelled) and error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from chatbot.errors import ChatbotError, DeadlineExceeded
from chatbot.ops import tracing
from chatbot.providers.base import (
    PLAIN,
    ChatMessage,
    ChatModel,
    ChatRequest,
    Embedder,
    GenerationOptions,
    Passage,
    Reranker,
    SparseEmbedder,
)
from chatbot.rag.events import (
    ChatEvent,
    DoneEvent,
    ErrorEvent,
    SourcesEvent,
    StartEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
)
from chatbot.rag.followups import fallback_rewrite, looks_like_followup
from chatbot.rag.prompts import Prompts
from chatbot.rag.retriever import Retriever, as_chunks, as_sources, elapsed_ms, staged
from chatbot.settings import Settings
from chatbot.stores.base import (
    AnswerCache,
    ConversationStore,
    MetadataFilter,
    QueryVectors,
    SearchMode,
    VectorStore,
)
from chatbot.stores.records import CachedAnswer, Turn

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    tenant: str
    question: str
    message_id: str
    conversation_id: str = ""
    # Given by clients that keep their own history (OpenAI-compatible API); then nothing is saved.
    history: Sequence[ChatMessage] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    # An untrusted caller (a widget visitor): its answers enter the shared cache only with default parameters.
    untrusted: bool = False
    options: GenerationOptions = PLAIN
    # After the question, in a client-kept history: the assistant's tool calls and the tool results.
    continuation: Sequence[ChatMessage] = ()
    where: MetadataFilter | None = None  # search only the chunks whose metadata matches (never cached)


# AnswerRequest fields that do not change the answer's text: every other field (temperature, max_tokens, and
# any generation parameter added later) is part of the cache key, so a new one splits the cache, never
# poisons it. A history, tool options or a tool continuation make a request uncacheable (cacheable below).
_NOT_GENERATION = frozenset(
    {
        "tenant",
        "question",
        "message_id",
        "conversation_id",
        "history",
        "untrusted",
        "options",
        "continuation",
        "where",
    }
)


def generation_params(req: AnswerRequest) -> dict[str, object]:
    """The request's parameters that change the answer (None: the default)."""
    return {f.name: getattr(req, f.name) for f in dataclasses.fields(req) if f.name not in _NOT_GENERATION}


def cache_variant(req: AnswerRequest, *, model: str, prompts_version: str) -> str:
    """The answer cache's key besides tenant, generation and question: the model, the prompt templates'
    version and every generation parameter of the request."""
    key = {"model": model, "prompts": prompts_version, "params": generation_params(req)}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()[:32]


@dataclass(slots=True)
class _Progress:
    parts: list[str] = field(default_factory=list)
    outcome: str = "stopped"
    error_code: str | None = None


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

    @property
    def search_mode(self) -> SearchMode:
        return self.retriever.mode

    async def stream_answer(self, req: AnswerRequest) -> AsyncIterator[ChatEvent]:
        progress = _Progress()
        saved = False

        async def save(outcome: str, error_code: str | None = None) -> None:
            # before the terminal event goes out: a client's next message must find this turn in the history
            nonlocal saved
            progress.outcome, progress.error_code, saved = outcome, error_code, True
            await self._save_turn(req, progress)

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
                await self._save_turn(req, progress)

    async def _run(self, req: AnswerRequest, progress: _Progress) -> AsyncGenerator[ChatEvent, None]:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        limits = self.settings.limits
        deadlines = self.settings.deadlines

        history_task: Awaitable[list[ChatMessage]]
        if req.history is not None:
            kept = list(req.history)[-limits.max_history_messages :] if limits.max_history_messages else []
            while kept and kept[0].role == "tool":  # cut from the assistant message that called it
                kept.pop(0)
            history_task = _ready(kept)
        else:
            history_task = self._load_history(req)
        raw_vectors, history, generation = await asyncio.gather(
            self.retriever.embed(req.question, timings),
            history_task,
            self._cache_generation(req.tenant),
        )
        cacheable = (
            self.cache is not None
            and not history
            and raw_vectors.dense is not None
            and req.options.plain  # a cached text answer would ignore tools, stop, a format, a seed
            and not req.continuation
            and req.where is None  # a filtered answer is for that filter only
        )
        variant = cache_variant(req, model=self.chat.name, prompts_version=self.prompts.version)
        # a visitor's answer at temperature 2 is for that visitor only: never served to the tenant's others
        shareable = not (req.untrusted and any(v is not None for v in generation_params(req).values()))
        if cacheable:
            hit = await self._cached(req, generation, variant, raw_vectors, timings)
            if hit is not None:
                async for event in self._replay(hit, progress, timings, started):
                    yield event
                return

        queries = [raw_vectors]
        search_text = req.question
        if history and self.settings.retrieval.rewrite_followups and looks_like_followup(req.question):
            search_text = await self._rewrite(req.question, [m for m in history if _is_text(m)])
            if search_text != req.question:
                queries.append(await self.retriever.embed(search_text, timings))

        sources = await self.retriever.retrieve(req.tenant, queries, search_text, timings, where=req.where)
        yield SourcesEvent(sources=tuple(sources))

        passages = [Passage(n=s.n, text=s.text, title=s.title) for s in sources]
        request = ChatRequest(
            messages=self.prompts.chat_messages(req.question, passages, history),
            question=req.question,
            passages=passages,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            options=req.options,
            continuation=req.continuation,
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
        deadline = _StreamDeadline(min(first_deadline, answer_deadline))  # one timer per stream
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
        if cacheable and shareable and sources and finish_reason == "stop" and self.cache is not None:
            try:  # after done: the client does not wait for this
                await self.cache.store_answer(
                    req.tenant,
                    generation,
                    variant,
                    raw_vectors.dense or (),
                    question=req.question,
                    answer="".join(progress.parts),
                    sources=as_chunks(sources),
                    model=answered_by,
                )
            except ChatbotError:
                log.warning("could not store answer %s in the cache", req.message_id)

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
        assert vectors.dense is not None  # noqa: S101 - checked by the caller
        hit = await staged(
            "cache",
            self.settings.deadlines.retrieve,
            self.cache.lookup(req.tenant, generation, variant, vectors.dense),
            timings,
        )
        if self.on_cache_lookup is not None:
            self.on_cache_lookup(hit is not None)
        return hit

    async def _replay(
        self, hit: CachedAnswer, progress: _Progress, timings: dict[str, float], started: float
    ) -> AsyncIterator[ChatEvent]:
        """A cached answer, streamed like any other (sources, tokens, done) and marked cached."""
        yield SourcesEvent(sources=tuple(as_sources(hit.sources)))
        for piece in re.findall(r"\S+\s*|\s+", hit.answer):
            progress.parts.append(piece)
            yield TokenEvent(delta=piece)
        timings["total"] = elapsed_ms(started)
        words = _estimate_tokens(progress.parts)
        yield self._done(Usage(0, words), timings, "stop", hit.model, progress, None, cached=True)

    def _done(
        self,
        usage: Usage,
        timings: dict[str, float],
        finish_reason: str,
        model: str,
        progress: _Progress,
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

    async def _load_history(self, req: AnswerRequest) -> list[ChatMessage]:
        if not req.conversation_id:
            return []
        limit = self.settings.limits.max_history_messages
        turns = await self.conversations.history(req.tenant, req.conversation_id, limit)
        return [ChatMessage(t.role, t.content) for t in turns if t.content]

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

    async def _save_turn(self, req: AnswerRequest, progress: _Progress) -> None:
        if req.history is not None or not req.conversation_id:
            return
        try:
            await self.conversations.append(
                req.tenant,
                req.conversation_id,
                [
                    Turn("user", req.question, message_id=req.message_id),
                    Turn(
                        "assistant",
                        "".join(progress.parts),
                        message_id=req.message_id,
                        stopped=progress.outcome == "stopped",
                        error=progress.error_code,
                    ),
                ],
            )
        except Exception:
            log.exception("could not save turn of answer %s", req.message_id)


class _StreamDeadline:
    """A deadline over many `next(stream)` calls with one timer, where `asyncio.timeout_at` around each call
    armed and cancelled a timer per chunk (27 us per chunk on uvloop: 1.3 ms of a 50-token turn).

    The timer cancels the task only while it awaits the stream inside `next()`, and `next()` turns that
    cancellation into TimeoutError (as asyncio.timeout does, counting cancel requests so that a stop arriving
    at the same time stays a cancellation). A deadline that passes while the caller is elsewhere (between
    chunks, at a `yield`) is raised by the following `next()`. Deadlines are perf_counter times.
    """

    __slots__ = ("_cancelled", "_expired", "_handle", "_loop", "_task", "_waiting")

    def __init__(self, deadline: float) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("_StreamDeadline needs a running task")
        self._task = task
        self._waiting = False
        self._expired = False
        self._cancelled = False  # the timer cancelled the task during the current next()
        self._handle = self._arm(deadline)

    def _arm(self, deadline: float) -> asyncio.TimerHandle:
        return self._loop.call_at(self._loop.time() + max(0.0, deadline - time.perf_counter()), self._expire)

    def move(self, deadline: float) -> None:
        self._handle.cancel()
        self._expired = False
        self._handle = self._arm(deadline)

    def close(self) -> None:
        self._handle.cancel()

    def _expire(self) -> None:
        self._expired = True
        if self._waiting and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    async def next(self, stream: AsyncIterator[T]) -> T:
        """The next item of `stream`, or TimeoutError once the deadline has passed."""
        if self._expired:
            raise TimeoutError
        cancelling = self._task.cancelling()  # cancel requests before ours (asyncio.timeout does the same)
        self._waiting = True
        try:
            return await anext(stream)
        except asyncio.CancelledError:
            if self._cancelled and self._task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise  # a stop (or shutdown) asked too: it stays a cancellation
        finally:
            self._waiting = False
            self._cancelled = False


def _is_text(message: ChatMessage) -> bool:
    """A plain user or assistant turn (not a tool call or a tool result)."""
    return message.role in ("user", "assistant") and not message.tool_calls


async def _ready(value: T) -> T:
    return value


def _estimate_tokens(texts: Iterable[str]) -> int:
    return sum(len(t.split()) for t in texts)
