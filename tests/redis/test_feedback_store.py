"""One contract for MemoryFeedbackStore and RedisFeedbackStore (real redis-server), and `feedback export`
reading what a Redis-backed server stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chatbot.__main__ import main
from chatbot.errors import UnknownMessage
from chatbot.eval.feedback import read_feedback
from chatbot.settings import RedisSettings
from chatbot.stores.base import AnsweredTurn, Feedback, FeedbackStore
from chatbot.stores.memory import MemoryFeedbackStore
from chatbot.stores.redis.feedback import RedisFeedbackStore
from tests.redis.conftest import ConnectionFactory

pytestmark = pytest.mark.redis

StoreFactory = Callable[[], contextlib.AbstractAsyncContextManager[FeedbackStore]]
SOURCES = ({"n": 1, "doc_id": "d1", "source": "guide.md", "title": "Guide", "text": "Use /v1/ws."},)


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest, connect: ConnectionFactory) -> StoreFactory:
    @contextlib.asynccontextmanager
    async def open_() -> AsyncIterator[FeedbackStore]:
        if request.param == "memory":
            yield MemoryFeedbackStore(max_answers=100)
            return
        async with connect() as conn:
            yield RedisFeedbackStore(conn, ttl_seconds=600)

    return open_


async def rated(store: FeedbackStore, tenant: str | None = None) -> list[tuple[AnsweredTurn, list[Feedback]]]:
    return [item async for item in store.rated(tenant)]


class TestContract:
    async def test_record_rate_replace(self, make_store: StoreFactory) -> None:
        """A recorded turn takes ratings; the same user's second rating replaces the first."""
        async with make_store() as store:
            turn = AnsweredTurn("acme", "msg_1", "How?", "Like this [1].", SOURCES, model="m")
            await store.record(turn)
            assert await store.turn("acme", "msg_1") == turn
            assert await rated(store) == []  # recorded but not rated: not exported
            assert await store.rate("acme", Feedback("msg_1", "key:a", "up")) is False
            assert await store.rate("acme", Feedback("msg_1", "key:a", "down", comment="wrong")) is True
            assert await store.rate("acme", Feedback("msg_1", "key:b", "up")) is False
            [(got, votes)] = await rated(store)
            assert got == turn
            assert sorted((v.user, v.rating, v.comment) for v in votes) == [
                ("key:a", "down", "wrong"),
                ("key:b", "up", ""),
            ]

    async def test_tenants_are_apart(self, make_store: StoreFactory) -> None:
        """Another tenant cannot read or rate a turn, and export by tenant sees only its own."""
        async with make_store() as store:
            await store.record(AnsweredTurn("acme", "msg_1", "q", "a"))
            await store.record(AnsweredTurn("globex", "msg_2", "q2", "a2"))
            assert await store.turn("globex", "msg_1") is None
            with pytest.raises(UnknownMessage):
                await store.rate("globex", Feedback("msg_1", "u", "up"))
            await store.rate("acme", Feedback("msg_1", "u", "up"))
            await store.rate("globex", Feedback("msg_2", "u", "down"))
            assert [t.message_id for t, _ in await rated(store, "acme")] == ["msg_1"]
            assert sorted(t.message_id for t, _ in await rated(store)) == ["msg_1", "msg_2"]

    @pytest.mark.parametrize(
        ("tenant", "message_id"), [("a:b", "c"), ("a", "b:c"), ("{a}", "x"), ("a}:{b", "m"), ("", "m")]
    )
    async def test_key_forging_ids_stay_apart(
        self, make_store: StoreFactory, tenant: str, message_id: str
    ) -> None:
        """Ids with ':' '{' '}' cannot reach another tenant's turn through the key layout."""
        async with make_store() as store:
            await store.record(AnsweredTurn(tenant, message_id, "q", "a"))
            for other_tenant, other_id in (("a", "b:c"), ("a:b", "c"), ("a", "b")):
                if (other_tenant, other_id) != (tenant, message_id):
                    assert await store.turn(other_tenant, other_id) is None

    async def test_unknown_message(self, make_store: StoreFactory) -> None:
        """Rating an answer that was never recorded (or expired) is UnknownMessage."""
        async with make_store() as store:
            with pytest.raises(UnknownMessage):
                await store.rate("acme", Feedback("msg_none", "u", "up"))


class TestExportCommand:
    async def test_cli_exports_what_the_redis_store_holds(
        self,
        connect: ConnectionFactory,
        redis_settings: RedisSettings,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """`python -m chatbot feedback export --tenant acme --out F` writes JSONL the eval reader reads back."""
        async with connect() as conn:
            store = RedisFeedbackStore(conn, ttl_seconds=600)
            await store.record(AnsweredTurn("acme", "msg_1", "How do I connect?", "Use /v1/ws [1].", SOURCES))
            await store.record(AnsweredTurn("globex", "msg_2", "Other?", "Other.", ()))
            await store.rate("acme", Feedback("msg_1", "u", "up", comment="great", reasons=()))
            await store.rate("globex", Feedback("msg_2", "u", "down", reasons=("incorrect",)))
        monkeypatch.setenv("CHATBOT_REDIS__URL", str(redis_settings.url))
        monkeypatch.setenv("CHATBOT_REDIS__KEY_PREFIX", redis_settings.key_prefix)
        out = tmp_path / "acme.jsonl"
        assert await _run_main(["feedback", "export", "--tenant", "acme", "--out", str(out)]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [(r["question"], r["rating"], r["comment"]) for r in rows] == [
            ("How do I connect?", "up", "great")
        ]
        assert rows[0]["sources"] == [dict(SOURCES[0])]
        [case] = read_feedback(out)
        assert (case.sources, case.good) == (("guide.md",), True)
        every = tmp_path / "all.jsonl"
        assert await _run_main(["feedback", "export", "--out", str(every)]) == 0
        assert sorted(c.rating for c in read_feedback(every)) == ["down", "up"]


async def _run_main(argv: list[str]) -> int:
    """main() runs its own event loop: run it in a thread, away from the test's loop."""
    return await asyncio.to_thread(main, argv)
