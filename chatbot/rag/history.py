"""The conversation around one answer: the history read before it and the turn saved after it, on every path
(done, stopped, error). A client that keeps its own history (OpenAI-compatible API) gets nothing saved."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from chatbot.providers.base import ChatMessage
from chatbot.rag.answer_request import AnswerRequest
from chatbot.stores.base import ConversationStore
from chatbot.stores.records import Turn

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TurnProgress:
    """The answer so far and how it ended: saved as the assistant's turn."""

    parts: list[str] = field(default_factory=list)
    outcome: str = "stopped"
    error_code: str | None = None


async def load_history(conversations: ConversationStore, req: AnswerRequest, limit: int) -> list[ChatMessage]:
    """The messages before the question: the client's own (its last `limit`), else the stored conversation's."""
    if req.history is not None:
        kept = list(req.history)[-limit:] if limit else []
        while kept and kept[0].role == "tool":  # cut from the assistant message that called it
            kept.pop(0)
        return kept
    if not req.conversation_id:
        return []
    turns = await conversations.history(req.tenant, req.conversation_id, limit)
    return [ChatMessage(t.role, t.content) for t in turns if t.content]


async def save_turn(conversations: ConversationStore, req: AnswerRequest, progress: TurnProgress) -> None:
    """Appends the question and the answer so far; a failure is logged, never raised."""
    if req.history is not None or not req.conversation_id:
        return
    try:
        await conversations.append(
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
