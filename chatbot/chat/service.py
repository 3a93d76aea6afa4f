"""The chat use case: start, follow, stop and collect answers. Every caller comes through here.

The websocket, the HTTP routes, the OpenAI and AI SDK dialects, the CLI and a notebook all call the same
methods, so a script gets the same quotas, conversation handling and answer task as the server. Admission
happens in start() only, in one order for every caller:

    requests per minute (per caller: API key or widget visitor; and a widget caller's address)
    -> [the ask is validated, its conversation found] -> one answer per connection
    -> concurrency slots (the tenant's, a widget visitor's) -> the day's token budgets (the tenant's, a visitor's)

then the conversation is created if new and the answer task starts. A connection (open_connection) brings
the per-connection rule (one running answer at a time: stream.on_busy_connection refuses the next ask or
replaces the running answer) and holds one of the tenant's (and a widget visitor's) websocket connection
slots while it is open. Widget callers never take the tenant's last quotas.api_key_reserve (chat/quotas.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, replace

from chatbot.chat.answers import DISCONNECTED, QUOTA, REPLACED, STOP_REQUESTED, AnswerManager, new_message_id
from chatbot.chat.caller import Caller
from chatbot.chat.quotas import Quotas
from chatbot.errors import (
    AnswerInProgress,
    BadRequest,
    ChatbotError,
    EmptyMessage,
    MessageTooLong,
    UnknownConversation,
    status_for_code,
)
from chatbot.events import (
    ChatEvent,
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
    ToolCallEvent,
    Usage,
    is_terminal,
)
from chatbot.ops.observability import message_context
from chatbot.providers.base import PLAIN, ChatMessage, GenerationOptions
from chatbot.rag.pipeline import AnswerRequest
from chatbot.settings import Settings
from chatbot.stores.base import ConversationStore, MetadataFilter

Events = AsyncGenerator[tuple[int, ChatEvent], None]


@dataclass(frozen=True, slots=True)
class Ask:
    """A question in a stored conversation (a new one when conversation_id is None), or, with `messages`,
    a history the client keeps (OpenAI-compatible API, AI SDK useChat): its last user message is the
    question, earlier messages are the history, system messages are dropped (our prompts define the
    assistant), and nothing is stored server-side. After the question may come an agent loop's exchange
    (assistant tool calls, then 'tool' results): it goes to the model after the question."""

    message: str = ""
    conversation_id: str | None = None
    messages: Sequence[ChatMessage] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    options: GenerationOptions = PLAIN
    where: MetadataFilter | None = None  # a metadata filter on the searched chunks (stores/filters.py)


@dataclass(frozen=True, slots=True)
class Started:
    message_id: str
    conversation_id: str  # "" when the client keeps the history


@dataclass(frozen=True, slots=True)
class Collected:
    """A whole answer. finish_reason is the model's ('stop', 'length'), or 'stopped' (stopped is True)."""

    message_id: str
    conversation_id: str
    text: str
    sources: tuple[Source, ...]
    finish_reason: str
    stopped: bool = False
    usage: Usage | None = None
    model: str = ""
    timings: dict[str, float] | None = None
    cached: bool = False
    tool_calls: tuple[ToolCallEvent, ...] = ()


def check_message(message: str, max_chars: int) -> str:
    if not message.strip():
        raise EmptyMessage()
    if len(message) > max_chars:
        raise MessageTooLong(f"The message is {len(message)} characters; the limit is {max_chars}.")
    return message.strip()


def error_of(event: ErrorEvent, **details: str) -> ChatbotError:
    """An answer's error event as the error it reports (its status found by its code)."""
    if event.param is not None:
        details = {**details, "param": event.param}
    err = ChatbotError(event.message, code=event.code, retry_after=event.retry_after, details=details or None)
    err.status = status_for_code(event.code)  # type: ignore[misc]
    return err


class ChatService:
    def __init__(
        self,
        answers: AnswerManager,
        conversations: ConversationStore,
        settings: Settings,
        quotas: Quotas | None = None,
    ) -> None:
        self.answers = answers
        self.conversations = conversations
        self.settings = settings
        self.quotas = quotas
        if quotas is not None:
            quotas.on_exhausted = lambda message_id: answers.cancel_local(message_id, QUOTA)

    @property
    def accepting(self) -> bool:
        """False once shutdown began: new answers are refused."""
        return self.answers.accepting

    async def admit_request(self, caller: Caller) -> None:
        """Count one request of `caller` against requests_per_minute (for routes that start no answer;
        start() counts its own)."""
        if self.quotas is not None:
            await self.quotas.admit_request(caller)

    async def start(self, caller: Caller, ask: Ask, *, running: str | None = None) -> Started:
        """Admit and start an answer. `running`: the answer already running on the caller's connection."""
        if self.quotas is not None:
            await self.quotas.admit_request(caller)
        req = await self._request(caller, ask)  # a bad ask does not replace the running answer
        if running is not None and self.answers.is_running(running, caller.tenant):
            if self.settings.stream.on_busy_connection == "refuse":
                raise AnswerInProgress()
            await self.answers.stop(running, caller.tenant, REPLACED)
        if self.quotas is not None:
            await self.quotas.begin_answer(caller, req.message_id)
        try:
            if ask.messages is None and ask.conversation_id is None:  # created once admitted
                req = replace(req, conversation_id=await self.conversations.create(caller.tenant))
            with message_context(req.message_id):  # the task copies the context: its log lines carry it
                self.answers.start(req)
        except BaseException:
            if self.quotas is not None:
                await self.quotas.abandon(req.message_id)
            raise
        return Started(req.message_id, req.conversation_id)

    async def follow(
        self, caller: Caller, message_id: str, after: int = 0, *, stop_on_leave: bool = False
    ) -> Events:
        """The answer's (seq, event) pairs after `after`, up to its terminal event. Raises UnknownMessage now
        (not at the first read) for an unknown, expired or other tenant's answer. A reader that cannot
        resume passes stop_on_leave: if it leaves before the end (disconnect, cancellation, aclose) the
        answer is stopped at once instead of running on for the grace window."""
        await self.answers.log.check(message_id, caller.tenant, after)
        events = self.answers.read(message_id, caller.tenant, after)
        return self._stopped_on_leave(events, message_id) if stop_on_leave else events

    async def stop(self, caller: Caller, message_id: str, reason: str = STOP_REQUESTED) -> bool:
        """Stop an answer running here or on another instance; False if it had already ended."""
        return await self.answers.stop(message_id, caller.tenant, reason)

    async def collect(self, caller: Caller, message_id: str) -> Collected:
        """Read the whole answer (stopping it if the caller leaves first). An answer that failed raises its
        error (with the message and conversation ids in its details)."""
        text: list[str] = []
        sources: tuple[Source, ...] = ()
        calls: list[ToolCallEvent] = []
        conversation_id = ""
        async with contextlib.aclosing(await self.follow(caller, message_id, stop_on_leave=True)) as events:
            async for _seq, event in events:
                if isinstance(event, StartEvent):
                    conversation_id = event.conversation_id
                elif isinstance(event, TokenEvent):
                    text.append(event.delta)
                elif isinstance(event, SourcesEvent):
                    sources = event.sources
                elif isinstance(event, ToolCallEvent):
                    calls.append(event)
                elif isinstance(event, DoneEvent):
                    return Collected(
                        message_id, conversation_id, "".join(text), sources, event.finish_reason,
                        usage=event.usage, model=event.model, timings=event.timings, cached=event.cached,
                        tool_calls=tuple(calls),
                    )  # fmt: skip
                elif isinstance(event, StoppedEvent):
                    return Collected(
                        message_id, conversation_id, "".join(text), sources, "stopped", stopped=True
                    )
                elif isinstance(event, ErrorEvent):
                    raise error_of(event, message_id=message_id, conversation_id=conversation_id)
        raise ChatbotError("The answer ended unexpectedly.")  # the log always ends with a terminal event

    @contextlib.asynccontextmanager
    async def open_connection(self, caller: Caller) -> AsyncIterator[Connection]:
        """A client connection: holds one of the tenant's websocket_connections slots (and a widget visitor's
        own) while open (RateLimited when one is not free)."""
        slots = await self.quotas.open_connection(caller) if self.quotas is not None else ()
        try:
            yield Connection(self, caller)
        finally:
            if self.quotas is not None:
                await self.quotas.close_connection(slots)

    # -- internals ------------------------------------------------------------------------------------

    async def _request(self, caller: Caller, ask: Ask) -> AnswerRequest:
        limit = self.settings.limits.max_message_chars
        message_id = new_message_id()
        if ask.messages is None:
            question = check_message(ask.message, limit)
            if ask.conversation_id is not None and not await self.conversations.exists(
                caller.tenant, ask.conversation_id
            ):
                raise UnknownConversation()
            return AnswerRequest(
                caller.tenant,
                question,
                message_id,
                ask.conversation_id or "",
                untrusted=caller.untrusted,
                where=ask.where,
            )
        turns = [m for m in ask.messages if m.role != "system"]
        if not turns:
            raise BadRequest("Send at least one user message.", code="no_messages")
        asked = max((i for i, m in enumerate(turns) if m.role == "user"), default=-1)
        continuation = turns[asked + 1 :]
        if asked < 0 or (continuation and continuation[-1].role != "tool"):
            raise BadRequest(
                "The last message must come from the user (or be a tool result).",
                code="last_message_not_user",
            )
        return AnswerRequest(
            tenant=caller.tenant,
            question=check_message(turns[asked].content, limit),
            message_id=message_id,
            history=tuple(m for m in turns[:asked] if m.content.strip() or m.tool_calls or m.role == "tool"),
            max_tokens=ask.max_tokens,
            temperature=ask.temperature,
            untrusted=caller.untrusted,
            options=ask.options,
            continuation=tuple(continuation),
            where=ask.where,
        )

    async def _stopped_on_leave(self, events: Events, message_id: str) -> Events:
        ended = False
        try:
            async for seq, event in events:
                ended = is_terminal(event)
                yield seq, event
        finally:
            await events.aclose()
            if not ended:
                self.answers.cancel_local(message_id, DISCONNECTED)


class Connection:
    """One client connection's answers (a websocket): at most one runs at a time."""

    def __init__(self, service: ChatService, caller: Caller) -> None:
        self.service = service
        self.caller = caller
        self.current: str | None = None  # the last answer asked on this connection

    async def ask(self, ask: Ask) -> Started:
        started = await self.service.start(self.caller, ask, running=self.current)
        self.current = started.message_id
        return started

    async def stop(self, message_id: str | None = None) -> None:
        """Stop this connection's answer (or the one named). Raises nothing_to_stop when there is none or
        it had already ended: a stop always gets a reply (the stopped event, or that error)."""
        target = message_id or self.current
        if target is None:
            raise BadRequest("No answer is running on this connection.", code="nothing_to_stop")
        if not await self.service.stop(self.caller, target):
            raise BadRequest("That answer has already ended.", code="nothing_to_stop")

    async def follow(self, message_id: str, after: int = 0) -> Events:
        return await self.service.follow(self.caller, message_id, after)
