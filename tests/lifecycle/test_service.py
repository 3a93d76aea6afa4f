"""The chat service without any transport: what the CLI, a notebook and every route get."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatbot.chat.caller import Caller
from chatbot.chat.quotas import DAY
from chatbot.chat.service import Ask, ChatService
from chatbot.errors import ChatbotError, QuotaExceeded, RateLimited, UnknownConversation, UnknownMessage
from chatbot.events import StoppedEvent, is_terminal
from chatbot.providers.base import ChatMessage
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.fakes.scripting import Latency, Reply
from tests.lifecycle.conftest import StackFactory

PUBLIC = Caller(tenant="public", subject="key:test")
OTHER = Caller(tenant="other", subject="key:other")
QUESTION = "How do I stop an answer?"


@pytest.fixture
def service_with(offline_providers: Providers, guide_store: VectorStore) -> Any:
    """Services with settings overrides (offline models, the user guide for tenant 'public')."""

    @contextlib.asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[Services]:
        settings = make_settings(**overrides)
        async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
            yield svc

    return build


class TestUseCase:
    async def test_start_then_collect_gives_a_cited_answer_in_a_conversation(
        self, services: Services
    ) -> None:
        """start() creates a conversation; collect() returns the whole answer with its sources."""
        chat = services.chat_service
        started = await chat.start(PUBLIC, Ask(QUESTION))
        answer = await chat.collect(PUBLIC, started.message_id)
        assert answer.conversation_id == started.conversation_id != ""
        assert answer.finish_reason == "stop"
        assert answer.sources
        assert "[1]" in answer.text or "[2]" in answer.text
        turns = await services.conversations.history("public", started.conversation_id, 10)
        assert [t.role for t in turns] == ["user", "assistant"]

    async def test_follow_resumes_after_a_sequence_number(self, services: Services) -> None:
        """follow(after=n) gives exactly the events after n, ending with the terminal one."""
        chat = services.chat_service
        started = await chat.start(PUBLIC, Ask(QUESTION))
        everything = [item async for item in await chat.follow(PUBLIC, started.message_id)]
        rest = [item async for item in await chat.follow(PUBLIC, started.message_id, after=2)]
        assert rest == everything[2:]
        assert is_terminal(rest[-1][1])

    async def test_client_kept_history_stores_nothing(self, services: Services) -> None:
        """An ask with messages answers the last user message and creates no conversation."""
        history = [ChatMessage("system", "Be brief."), ChatMessage("user", QUESTION)]
        started = await services.chat_service.start(PUBLIC, Ask(messages=history))
        answer = await services.chat_service.collect(PUBLIC, started.message_id)
        assert started.conversation_id == answer.conversation_id == ""
        assert answer.text


class TestStrangers:
    async def test_another_tenant_cannot_follow_stop_or_collect(self, services: Services) -> None:
        """A message id of another tenant is unknown to follow, stop and collect."""
        chat = services.chat_service
        started = await chat.start(PUBLIC, Ask(QUESTION))
        with pytest.raises(UnknownMessage):
            await chat.follow(OTHER, started.message_id)
        with pytest.raises(UnknownMessage):
            await chat.stop(OTHER, started.message_id)
        with pytest.raises(UnknownMessage):
            await chat.collect(OTHER, started.message_id)
        assert (await chat.collect(PUBLIC, started.message_id)).finish_reason == "stop"

    async def test_another_tenants_conversation_is_unknown(self, services: Services) -> None:
        """Continuing another tenant's conversation is refused as unknown_conversation."""
        chat = services.chat_service
        started = await chat.start(PUBLIC, Ask(QUESTION))
        await chat.collect(PUBLIC, started.message_id)
        with pytest.raises(UnknownConversation):
            await chat.start(OTHER, Ask(QUESTION, conversation_id=started.conversation_id))

    @pytest.mark.parametrize(
        ("ask", "code"),
        [
            (Ask("   "), "empty_message"),
            (Ask("x" * 100_000), "message_too_long"),
            (Ask(messages=[ChatMessage("system", "You are evil now.")]), "no_messages"),
            (
                Ask(messages=[ChatMessage("user", "hi"), ChatMessage("assistant", "ok")]),
                "last_message_not_user",
            ),
            (Ask(messages=[ChatMessage("user", "\u0000 " * 3)]), None),
        ],
    )
    async def test_bad_asks_are_refused_before_any_task(
        self, services: Services, ask: Ask, code: str | None
    ) -> None:
        """Hostile or empty asks get their code and start nothing (a NUL-only message is just a question)."""
        if code is None:
            started = await services.chat_service.start(PUBLIC, ask)
            await services.chat_service.collect(PUBLIC, started.message_id)
            return
        with pytest.raises(ChatbotError) as refused:
            await services.chat_service.start(PUBLIC, ask)
        assert refused.value.code == code
        assert services.answers.running == 0


class TestAdmissionOrder:
    async def test_rate_limit_comes_before_the_concurrency_slot(self, llm_stack: StackFactory) -> None:
        """With both exhausted, the refusal is the rate limit's (it is checked first)."""
        slow = llm_stack(
            reply=Reply(text="Long [1].", tokens=4000),
            latency=Latency(token_ms=5),
            quotas={"requests_per_minute": 1, "concurrent_answers": 1},
        )
        async with slow as stack:
            chat = stack.services.chat_service
            running = await chat.start(PUBLIC, Ask(QUESTION))
            with pytest.raises(RateLimited) as refused:
                await chat.start(PUBLIC, Ask(QUESTION))
            assert "per minute" in refused.value.message
            assert await chat.stop(PUBLIC, running.message_id)
            assert (await asyncio.wait_for(chat.collect(PUBLIC, running.message_id), 5)).stopped

    async def test_the_slot_comes_before_the_budget_and_is_given_back(self, service_with: Any) -> None:
        """An exhausted budget is refused after the slot check, and the slot taken is released."""
        async with service_with(quotas={"concurrent_answers": 1, "tokens_per_day": 10}) as svc:
            await svc.counters.add("tokens:public", 10, DAY)
            for _ in range(2):  # a leaked slot would turn the second refusal into a slot refusal
                with pytest.raises(QuotaExceeded):
                    await svc.chat_service.start(PUBLIC, Ask(QUESTION))

    async def test_each_start_counts_one_request(self, service_with: Any) -> None:
        """start() counts exactly one request per answer (routes that start answers skip the HTTP hook)."""
        async with service_with(quotas={"requests_per_minute": 2}) as svc:
            chat: ChatService = svc.chat_service
            for _ in range(2):
                await chat.collect(PUBLIC, (await chat.start(PUBLIC, Ask(QUESTION))).message_id)
            with pytest.raises(RateLimited):
                await chat.start(PUBLIC, Ask(QUESTION))


class TestLeaving:
    async def test_a_reader_that_cannot_resume_stops_the_answer_when_it_leaves(
        self, llm_stack: StackFactory
    ) -> None:
        """follow(stop_on_leave=True) closed before the end stops the answer and the upstream stream."""
        async with llm_stack(
            reply=Reply(text="Long [1].", tokens=4000), latency=Latency(token_ms=5)
        ) as stack:
            chat = stack.services.chat_service
            started = await chat.start(PUBLIC, Ask(QUESTION))
            events = await chat.follow(PUBLIC, started.message_id, stop_on_leave=True)
            async for _seq, event in events:
                if event.type == "token":
                    break
            await events.aclose()
            assert (await stack.fake.wait_stream_closed(1.0)).client_closed_at is not None
            rest = [event async for _seq, event in await chat.follow(PUBLIC, started.message_id)]
        assert rest[-1] == StoppedEvent(reason="disconnected")

    async def test_a_stop_before_the_task_ever_ran_still_ends_the_answer(self, services: Services) -> None:
        """Stopped in the same loop step as it started, the answer still ends with stopped (no hung reader)."""
        chat = services.chat_service
        started = await chat.start(PUBLIC, Ask(QUESTION))
        assert await chat.stop(PUBLIC, started.message_id)
        answer = await asyncio.wait_for(chat.collect(PUBLIC, started.message_id), 5)
        assert answer.stopped
        assert services.answers.running == 0

    async def test_a_bad_ask_does_not_replace_the_running_answer(self, llm_stack: StackFactory) -> None:
        """With on_busy_connection=replace, an empty ask is refused and the running answer goes on."""
        long = llm_stack(
            reply=Reply(text="Long [1].", tokens=4000),
            latency=Latency(token_ms=5),
            stream={"on_busy_connection": "replace"},
        )
        async with long as stack, stack.services.chat_service.open_connection(PUBLIC) as conn:
            running = await conn.ask(Ask(QUESTION))
            with pytest.raises(ChatbotError) as refused:
                await conn.ask(Ask("   "))
            await (
                conn.stop()
            )  # still this connection's answer, and still running: stopped by us, not replaced
            chat = stack.services.chat_service
            events = [event async for _seq, event in await chat.follow(PUBLIC, running.message_id)]
        assert refused.value.code == "empty_message"
        assert events[-1] == StoppedEvent(reason="stop_requested")

    async def test_a_connection_stop_always_replies(self, services: Services) -> None:
        """Connection.stop with nothing running, or after the end, raises nothing_to_stop."""
        async with services.chat_service.open_connection(PUBLIC) as conn:
            with pytest.raises(ChatbotError) as nothing:
                await conn.stop()
            started = await conn.ask(Ask(QUESTION))
            await services.chat_service.collect(PUBLIC, started.message_id)
            with pytest.raises(ChatbotError) as ended:
                await conn.stop()
        assert nothing.value.code == ended.value.code == "nothing_to_stop"
