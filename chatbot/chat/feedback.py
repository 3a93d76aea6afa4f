"""Feedback on answers: what was answered is recorded when an answer ends, and users rate it.

- FeedbackRecorder is an answers observer: it follows each running answer's sources and tokens (the answer
  text bounded by feedback.max_answer_chars) and, when the answer ends (done or stopped; a failed answer has
  nothing to rate), writes an AnsweredTurn to the FeedbackStore in a task of its own.
- FeedbackService.rate() takes a rating for a recorded answer of the caller's tenant (another tenant's id, or
  an unknown one, is UnknownMessage: 404). One rating per user: the same user rating again replaces it.
- FeedbackService.export() yields one JSON-ready row per rating (question, answer, sources, rating, comment,
  reasons), the regression set chatbot.eval.feedback reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from chatbot.chat.caller import Caller
from chatbot.errors import ValidationFailed
from chatbot.events import ChatEvent, DoneEvent, SourcesEvent, StartEvent, StoppedEvent, TokenEvent
from chatbot.stores.base import AnsweredTurn, Feedback, FeedbackStore
from chatbot.stores.feedback import FEEDBACK_REASONS, Rating

if TYPE_CHECKING:
    from chatbot.chat.answers import Answer

log = logging.getLogger(__name__)

EXPORT_SOURCE_FIELDS = ("n", "doc_id", "source", "title", "heading_path", "chunk_index", "text")


@dataclass(slots=True)
class _Running:
    question: str
    sources: tuple[dict[str, Any], ...] = ()
    parts: list[str] = field(default_factory=list)
    size: int = 0


class FeedbackRecorder:
    """Answers observer: records each ended answer so it can be rated (see the module docstring)."""

    def __init__(self, store: FeedbackStore, *, max_answer_chars: int) -> None:
        self.store = store
        self.max_answer_chars = max_answer_chars
        self._running: dict[str, _Running] = {}
        self._writes: dict[str, asyncio.Task[None]] = {}

    def observe(self, answer: Answer, event: ChatEvent) -> None:
        if isinstance(event, StartEvent):
            self._running[answer.message_id] = _Running(question=answer.question)
            return
        running = self._running.get(answer.message_id)
        if running is None:
            return
        if isinstance(event, SourcesEvent):
            running.sources = tuple(_source_row(s.to_dict()) for s in event.sources)
        elif isinstance(event, TokenEvent):
            room = self.max_answer_chars - running.size
            if room > 0:
                running.parts.append(event.delta[:room])
                running.size += min(room, len(event.delta))
        elif event.type in ("done", "stopped", "error"):
            del self._running[answer.message_id]
            if isinstance(event, DoneEvent | StoppedEvent) and running.parts:
                model = event.model if isinstance(event, DoneEvent) else ""
                turn = AnsweredTurn(
                    tenant=answer.tenant,
                    message_id=answer.message_id,
                    question=running.question,
                    answer="".join(running.parts),
                    sources=running.sources,
                    model=model,
                )
                task = asyncio.create_task(self._write(turn), name=f"feedback-record-{answer.message_id}")
                self._writes[answer.message_id] = task
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for message_id, running in list(self._writes.items()):
            if running is task:
                del self._writes[message_id]

    async def _write(self, turn: AnsweredTurn) -> None:
        try:
            await self.store.record(turn)
        except Exception:
            log.warning("could not record answer %s for feedback", turn.message_id, exc_info=True)

    async def settled(self, message_id: str) -> None:
        """Wait for the answer's record to be written (a rating may arrive the moment `done` is read)."""
        task = self._writes.get(message_id)
        if task is not None:
            await asyncio.shield(task)

    async def aclose(self) -> None:
        """Let the records being written finish (on shutdown, after the answers ended)."""
        if self._writes:
            await asyncio.wait(list(self._writes.values()), timeout=5)


def _source_row(source: dict[str, Any]) -> dict[str, Any]:
    return {k: source[k] for k in (*EXPORT_SOURCE_FIELDS, "score") if k in source}


def check_feedback(
    rating: str, comment: str | None, reasons: list[str] | None, *, max_comment_chars: int
) -> tuple[Rating, str, tuple[str, ...]]:
    """The rating, the trimmed comment and the reason codes (deduplicated, in enum order), or ValidationFailed."""
    if rating not in ("up", "down"):
        raise ValidationFailed("rating must be 'up' or 'down'.")
    text = (comment or "").strip()
    if len(text) > max_comment_chars:
        raise ValidationFailed(f"The comment is {len(text)} characters; the limit is {max_comment_chars}.")
    unknown = sorted(set(reasons or ()) - set(FEEDBACK_REASONS))
    if unknown:
        raise ValidationFailed("Unknown reason codes; use: " + ", ".join(FEEDBACK_REASONS) + ".")
    chosen = tuple(r for r in FEEDBACK_REASONS if r in set(reasons or ()))
    return rating, text, chosen  # type: ignore[return-value]  # checked against the Literal above


class FeedbackService:
    def __init__(
        self,
        store: FeedbackStore,
        recorder: FeedbackRecorder,
        *,
        max_comment_chars: int,
        observers: list[Callable[[Feedback], None]] | None = None,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.max_comment_chars = max_comment_chars
        self.observers: list[Callable[[Feedback], None]] = observers if observers is not None else []

    async def rate(
        self,
        caller: Caller,
        message_id: str,
        rating: str,
        *,
        comment: str | None = None,
        reasons: list[str] | None = None,
        client_id: str | None = None,
    ) -> tuple[Feedback, bool]:
        """Store the caller's rating of an answer of its tenant; (the feedback, whether it replaced one).
        The user is the caller's subject, narrowed by `client_id` (users behind one credential, a widget)."""
        checked, text, codes = check_feedback(
            rating, comment, reasons, max_comment_chars=self.max_comment_chars
        )
        await self.recorder.settled(message_id)
        user = caller.rate_key + (f"/{client_id}" if client_id else "")
        feedback = Feedback(message_id=message_id, user=user, rating=checked, comment=text, reasons=codes)
        replaced = await self.store.rate(caller.tenant, feedback)  # UnknownMessage: not this tenant's
        for observe in self.observers:
            try:
                observe(feedback)
            except Exception:
                log.exception("feedback observer failed")
        return feedback, replaced

    def export(self, tenant: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """One row per rating: the regression-set form (see chatbot.eval.feedback)."""
        return export_rows(self.store, tenant)


async def export_rows(store: FeedbackStore, tenant: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """One row per rating, rated answers oldest first."""
    async for turn, votes in store.rated(tenant):
        for vote in votes:
            yield export_row(turn, vote)


def export_row(turn: AnsweredTurn, vote: Feedback) -> dict[str, Any]:
    return {
        "tenant": turn.tenant,
        "message_id": turn.message_id,
        "question": turn.question,
        "answer": turn.answer,
        "sources": [{k: s[k] for k in EXPORT_SOURCE_FIELDS if k in s} for s in turn.sources],
        "model": turn.model,
        "rating": vote.rating,
        "comment": vote.comment,
        "reasons": list(vote.reasons),
        "rated_at": vote.created,
    }


async def write_jsonl(rows: AsyncIterator[dict[str, Any]], out: IO[str]) -> int:
    """Write rows as JSON lines (UTF-8 text, one object a line); returns how many."""
    count = 0
    async for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
