"""Answers as tasks, decoupled from the connections that read them.

- start() runs the pipeline in its own task; its events go through a coalescer into the event log.
- stop() cancels the task: cancellation closes the model's HTTP stream, the provider stops generating.
- Readers attach and detach. With no reader left, the answer runs on for the grace window, then is cancelled
  the same way (at once when stream.cancel_on_disconnect is set).
- Shutdown stops accepting, lets running answers finish until a deadline, then ends the rest with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from chatbot.errors import Busy, ChatbotError, QuotaExceeded, ShuttingDown, UnknownMessage
from chatbot.events import ChatEvent, ErrorEvent, StoppedEvent, TokenEvent, is_terminal
from chatbot.ops import tracing
from chatbot.rag.pipeline import AnswerRequest, Pipeline
from chatbot.settings import StreamSettings
from chatbot.stores.base import EventLog

log = logging.getLogger(__name__)

STOP_REQUESTED = "stop_requested"
DISCONNECTED = "disconnected"
SHUTDOWN = "shutdown"
REPLACED = "replaced"
QUOTA = "quota_exceeded"


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


@dataclass(eq=False, slots=True)
class Answer:
    message_id: str
    tenant: str
    conversation_id: str
    question: str = ""  # for observers that keep what was asked (feedback)
    task: asyncio.Task[None] | None = None
    readers: int = 0
    stop_reason: str | None = None
    ended: bool = False  # its terminal event is in the log
    finished: bool = False  # its task is over
    grace_timer: asyncio.TimerHandle | None = None
    started: float = field(default_factory=time.monotonic)


class AnswerBus(Protocol):
    """Coordination between instances: stop signals and reader presence. LocalBus for one process;
    a Redis implementation for several, so that a stop or a resume may arrive at any instance."""

    async def publish_stop(self, message_id: str, reason: str) -> None: ...

    async def listen(self, on_stop: Callable[[str, str], object]) -> None:
        """Run until cancelled, calling on_stop(message_id, reason) for every stop published anywhere."""
        ...

    async def touch_reader(self, message_id: str, ttl: float) -> None:
        """Record that a reader somewhere follows this answer, for `ttl` seconds."""
        ...

    async def has_reader(self, message_id: str) -> bool: ...


class LocalBus:
    """One process: every answer is local, so there is nothing to publish and no remote reader."""

    async def publish_stop(self, message_id: str, reason: str) -> None:  # noqa: ARG002 - nothing to publish
        return None

    async def listen(self, on_stop: Callable[[str, str], object]) -> None:  # noqa: ARG002 - no other instance
        await asyncio.Event().wait()

    async def touch_reader(self, message_id: str, ttl: float) -> None:  # noqa: ARG002 - readers are local
        return None

    async def has_reader(self, message_id: str) -> bool:  # noqa: ARG002 - no remote reader
        return False


class Coalescer:
    """Batches token deltas into frames: the first token goes out at once (time to first token matters),
    later ones every `interval` seconds or once `max_chars` are buffered. Other events flush the buffer first."""

    def __init__(self, emit: Callable[[ChatEvent], object], *, interval: float, max_chars: int) -> None:
        self._emit = emit
        self._interval = interval
        self._max_chars = max_chars
        self._buffer: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sent_first = False

    def push(self, event: ChatEvent) -> None:
        if not isinstance(event, TokenEvent):
            self.flush()
            self._emit(event)
            return
        if not self._sent_first or self._interval <= 0:
            self._sent_first = True
            self._emit(event)
            return
        self._buffer.append(event.delta)
        self._size += len(event.delta)
        if self._size >= self._max_chars:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buffer:
            delta = "".join(self._buffer)
            self._buffer.clear()
            self._size = 0
            self._emit(TokenEvent(delta=delta))


AnswerObserver = Callable[[Answer, ChatEvent], None]
"""Called with every event an answer emits (after coalescing), on the loop; must be quick and not raise."""


class AnswerManager:
    def __init__(
        self,
        pipeline: Pipeline,
        log_: EventLog,
        settings: StreamSettings,
        *,
        max_answers: int,
        observers: list[AnswerObserver] | None = None,
        bus: AnswerBus | None = None,
    ) -> None:
        self.bus: AnswerBus = bus or LocalBus()
        self._listener: asyncio.Task[None] | None = None
        self.pipeline = pipeline
        self.log = log_
        self.settings = settings
        self.max_answers = max_answers
        self.observers: list[AnswerObserver] = observers if observers is not None else []
        self._answers: dict[str, Answer] = {}
        self._checks: set[asyncio.Task[None]] = set()
        self._accepting = True

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def running(self) -> int:
        return sum(1 for a in self._answers.values() if not a.finished)

    def start(self, req: AnswerRequest) -> Answer:
        if not self._accepting:
            raise ShuttingDown()
        if self.running >= self.max_answers:
            raise Busy(retry_after=1.0)
        answer = Answer(req.message_id, req.tenant, req.conversation_id, req.question)
        self.log.create(req.message_id, req.tenant)
        self._answers[req.message_id] = answer
        answer.task = asyncio.create_task(self._run(answer, req), name=f"answer-{req.message_id}")
        # a task cancelled before its first step never runs _run: its end is logged from here
        answer.task.add_done_callback(lambda _task: self._finish(answer))
        return answer

    def is_running(self, message_id: str, tenant: str) -> bool:
        """True while the tenant's answer runs in this process."""
        answer = self._answers.get(message_id)
        return answer is not None and answer.tenant == tenant and not answer.finished

    def get(self, message_id: str, tenant: str) -> Answer:
        answer = self._answers.get(message_id)
        if answer is None or answer.tenant != tenant:
            raise UnknownMessage()
        return answer

    async def stop(self, message_id: str, tenant: str, reason: str = STOP_REQUESTED) -> bool:
        """Stop an answer running here or on another instance. False if it had already ended.
        Unknown ids (or another tenant's) raise UnknownMessage."""
        answer = self._answers.get(message_id)
        if answer is not None:
            if answer.tenant != tenant:
                raise UnknownMessage()
            return self._cancel(answer, reason)
        if await self.log.tenant_of(message_id) != tenant:
            raise UnknownMessage()
        await self.bus.publish_stop(message_id, reason)  # the owning instance cancels it, if it still runs
        return True

    def cancel_local(self, message_id: str, reason: str) -> bool:
        """Cancel an answer this process started (for readers that cannot resume and left)."""
        answer = self._answers.get(message_id)
        return answer is not None and self._cancel(answer, reason)

    def start_listening(self) -> None:
        """Follow stop signals published by other instances (call once the loop runs)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self.bus.listen(self.cancel_local), name="answer-bus")

    async def read(
        self, message_id: str, tenant: str, after: int = 0
    ) -> AsyncGenerator[tuple[int, ChatEvent], None]:
        """Read an answer's events as an attached reader (keeps the answer alive past the grace window,
        here or, through the bus, on the instance that runs it)."""
        events = self.log.read(message_id, tenant, after)
        answer = self._answers.get(message_id)
        presence: asyncio.Task[None] | None = None
        if answer is not None:
            self._attach(answer)
        else:
            presence = asyncio.create_task(self._keep_present(message_id), name=f"presence-{message_id}")
        try:
            async for item in events:
                yield item
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            if answer is not None:
                self._detach(answer)
            if presence is not None:
                presence.cancel()
                await asyncio.wait((presence,))

    async def _keep_present(self, message_id: str) -> None:
        interval = max(0.05, self.settings.grace_seconds / 3)
        while True:
            try:
                await self.bus.touch_reader(message_id, ttl=interval * 3)
            except Exception:
                log.warning("could not record reader presence for %s", message_id, exc_info=True)
            await asyncio.sleep(interval)

    async def shutdown(self, seconds: float) -> None:
        """Stop accepting; running answers may finish for most of `seconds`, then the rest are ended with an
        error event, all within `seconds` (the last quarter of it, at most 1 s, is for those ends)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        self._accepting = False
        tasks = [a.task for a in self._answers.values() if a.task and not a.finished]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, end - min(1.0, seconds / 4) - loop.time()))
        for answer in list(self._answers.values()):
            self._cancel(answer, SHUTDOWN)
        tasks = [a.task for a in self._answers.values() if a.task and not a.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.05, end - loop.time()))
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait((self._listener,))
            self._listener = None

    # -- internals ------------------------------------------------------------------------------------

    def _cancel(self, answer: Answer, reason: str) -> bool:
        if answer.finished or answer.task is None or answer.task.done():
            return False
        if answer.stop_reason is None:
            answer.stop_reason = reason
        answer.task.cancel(reason)
        return True

    def _attach(self, answer: Answer) -> None:
        answer.readers += 1
        if answer.grace_timer is not None:
            answer.grace_timer.cancel()
            answer.grace_timer = None

    def _detach(self, answer: Answer) -> None:
        answer.readers -= 1
        if answer.readers > 0 or answer.finished:
            return
        if self.settings.cancel_on_disconnect or self.settings.grace_seconds <= 0:
            self._cancel(answer, DISCONNECTED)
        else:
            answer.grace_timer = asyncio.get_running_loop().call_later(
                self.settings.grace_seconds, self._abandon, answer
            )

    def _abandon(self, answer: Answer) -> None:
        answer.grace_timer = None
        if answer.readers == 0 and not answer.finished:
            task = asyncio.create_task(
                self._abandon_unless_read_elsewhere(answer), name=f"abandon-{answer.message_id}"
            )
            self._checks.add(task)  # a reference, so the task is not collected mid-flight
            task.add_done_callback(self._checks.discard)

    async def _abandon_unless_read_elsewhere(self, answer: Answer) -> None:
        try:
            remote = await self.bus.has_reader(answer.message_id)
        except Exception:
            log.warning("could not check remote readers of %s", answer.message_id, exc_info=True)
            remote = False
        if answer.readers > 0 or answer.finished:
            return
        if remote:  # followed from another instance: look again after another window
            answer.grace_timer = asyncio.get_running_loop().call_later(
                self.settings.grace_seconds, self._abandon, answer
            )
            return
        log.info(
            "answer %s has had no reader for %ss; cancelling", answer.message_id, self.settings.grace_seconds
        )
        self._cancel(answer, DISCONNECTED)

    def _emit(self, answer: Answer, event: ChatEvent) -> None:
        """Log an event and tell the observers; nothing after the terminal event."""
        if answer.ended:
            return
        self.log.append(answer.message_id, event)
        answer.ended = is_terminal(event)
        for observe in self.observers:
            try:
                observe(answer, event)
            except Exception:
                log.exception("answer observer failed")

    @staticmethod
    def _cancelled_event(answer: Answer) -> ChatEvent:
        """The terminal event of a cancelled answer: stopped by a user, or an error when the server ended it."""
        if answer.stop_reason in (SHUTDOWN, QUOTA):
            err: ChatbotError = (
                ShuttingDown("The server shut down before the answer finished.")
                if answer.stop_reason == SHUTDOWN
                else QuotaExceeded("The token budget ran out during this answer.")
            )
            return ErrorEvent(code=err.code, message=err.message)
        return StoppedEvent(reason=answer.stop_reason or STOP_REQUESTED)

    def _finish(self, answer: Answer) -> None:
        if not answer.ended:  # cancelled before it ever ran, or (defensive) a pipeline without an end
            self._emit(answer, self._cancelled_event(answer) if answer.stop_reason else _UNEXPECTED_END)
        if answer.finished:
            return
        answer.finished = True
        if answer.grace_timer is not None:
            answer.grace_timer.cancel()
        # forget the task after the log forgets the events, so stop() on a finished id stays well-defined
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_later(
                self.settings.grace_seconds + 1, self._answers.pop, answer.message_id, None
            )

    async def _run(self, answer: Answer, req: AnswerRequest) -> None:
        coalescer = Coalescer(
            lambda event: self._emit(answer, event),
            interval=self.settings.coalesce_ms / 1000,
            max_chars=self.settings.coalesce_chars,
        )
        turn = (
            tracing.turn_attributes(
                model=self.pipeline.chat.name,
                message_id=req.message_id,
                conversation_id=req.conversation_id,
                question=req.question,
            )
            if tracing.enabled()
            else None
        )
        try:
            with tracing.span("chatbot.turn", turn):
                events = self.pipeline.stream_answer(req)
                try:
                    async for event in events:
                        coalescer.push(event)
                finally:
                    await events.aclose()  # type: ignore[attr-defined]  # saves the turn, closes the model stream
        except asyncio.CancelledError:
            coalescer.flush()
            self._emit(answer, self._cancelled_event(answer))
            raise
        finally:
            coalescer.flush()
            self._finish(answer)


_UNEXPECTED_END = ErrorEvent(code="internal_error", message="The answer ended unexpectedly.")
