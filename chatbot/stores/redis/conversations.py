"""RedisConversationStore: the ConversationStore Protocol in Redis, so a conversation continues anywhere.

Per tenant and conversation: a marker key (exists even before the first turn) and a list of JSON turns,
trimmed to the last `max_turns`; both expire `ttl_seconds` after the last write. The tenant is part of
every key, so one tenant cannot name another's conversation.
"""

from __future__ import annotations

import json
import time
from typing import Any

from chatbot.errors import UnknownConversation
from chatbot.stores.ids import new_conversation_id
from chatbot.stores.records import Turn
from chatbot.stores.redis.client import RedisConnection, key_part, redis_errors

# KEYS: meta, turns. ARGV: max_turns, ttl_seconds, turn JSON... -> 0 when the conversation does not exist.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[1]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


class RedisConversationStore:
    def __init__(self, conn: RedisConnection, *, max_turns: int, ttl_seconds: int) -> None:
        self._conn = conn
        self._redis = conn.client
        self._max_turns = max(2, max_turns)
        self._ttl = ttl_seconds
        self._append = self._redis.register_script(_APPEND)

    def _keys(self, tenant: str, conversation_id: str) -> tuple[str, str]:
        tag = "{" + key_part(tenant) + ":" + key_part(conversation_id) + "}"
        return self._conn.key("conv", tag, "meta"), self._conn.key("conv", tag, "turns")

    async def create(self, tenant: str) -> str:
        cid = new_conversation_id()
        meta, _ = self._keys(tenant, cid)
        with redis_errors("create conversation"):
            await self._redis.set(meta, str(time.time()), ex=self._ttl)
        return cid

    async def exists(self, tenant: str, conversation_id: str) -> bool:
        meta, _ = self._keys(tenant, conversation_id)
        with redis_errors("conversation exists"):
            return bool(await self._redis.exists(meta))

    async def history(self, tenant: str, conversation_id: str, limit: int) -> list[Turn]:
        meta, turns = self._keys(tenant, conversation_id)
        with redis_errors("conversation history"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.exists(meta)
                if limit > 0:
                    pipe.lrange(turns, -limit, -1)
                replies = await pipe.execute()
        if not replies[0]:
            raise UnknownConversation()
        return [_turn(json.loads(item)) for item in replies[1]] if limit > 0 else []

    async def append(self, tenant: str, conversation_id: str, turns: list[Turn]) -> None:
        if not turns:
            return
        meta, key = self._keys(tenant, conversation_id)
        args: list[Any] = [self._max_turns, self._ttl, *(json.dumps(t.to_dict()) for t in turns)]
        with redis_errors("append turns"):
            appended = await self._append(keys=[meta, key], args=args)
        if not appended:
            raise UnknownConversation()


def _turn(obj: dict[str, Any]) -> Turn:
    return Turn(
        role=obj["role"],
        content=obj["content"],
        message_id=obj["message_id"],
        stopped=obj["stopped"],
        error=obj["error"],
        created=obj["created"],
    )
