"""Conversation history per tenant. In memory (bounded) here; a Redis store implements the same Protocol."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from chatbot.errors import UnknownConversation


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str
    message_id: str = ""
    stopped: bool = False
    error: str | None = None
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "message_id": self.message_id,
            "stopped": self.stopped,
            "error": self.error,
            "created": self.created,
        }


class ConversationStore(Protocol):
    async def create(self, tenant: str) -> str: ...

    async def exists(self, tenant: str, conversation_id: str) -> bool: ...

    async def history(self, tenant: str, conversation_id: str, limit: int) -> list[Turn]:
        """The last `limit` turns, oldest first; UnknownConversation if there is no such conversation."""
        ...

    async def append(self, tenant: str, conversation_id: str, turns: list[Turn]) -> None: ...


def new_conversation_id() -> str:
    return uuid.uuid4().hex


class MemoryConversationStore:
    """Bounded: at most `max_conversations` (least recently used dropped), `max_turns` turns each."""

    def __init__(self, *, max_conversations: int, max_turns: int) -> None:
        self._max_conversations = max_conversations
        self._max_turns = max(2, max_turns)
        self._items: OrderedDict[tuple[str, str], deque[Turn]] = OrderedDict()

    async def create(self, tenant: str) -> str:
        cid = new_conversation_id()
        self._items[(tenant, cid)] = deque(maxlen=self._max_turns)
        while len(self._items) > self._max_conversations:
            self._items.popitem(last=False)
        return cid

    async def exists(self, tenant: str, conversation_id: str) -> bool:
        return (tenant, conversation_id) in self._items

    async def history(self, tenant: str, conversation_id: str, limit: int) -> list[Turn]:
        turns = self._get(tenant, conversation_id)
        return list(turns)[-limit:] if limit > 0 else []

    async def append(self, tenant: str, conversation_id: str, turns: list[Turn]) -> None:
        self._get(tenant, conversation_id).extend(turns)

    def _get(self, tenant: str, conversation_id: str) -> deque[Turn]:
        key = (tenant, conversation_id)
        try:
            turns = self._items[key]
        except KeyError:
            raise UnknownConversation() from None
        self._items.move_to_end(key)
        return turns
