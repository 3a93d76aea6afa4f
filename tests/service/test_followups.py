"""Follow-up questions through the pipeline: the rewritten and the raw question are fused in one search.

Offline (extractive chat model) the rewrite is the fallback (previous question + this one); with an LLM
(the real openai SDK against the fake OpenAI server) it goes through prompts/rewrite.j2, and a failed rewrite
falls back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from chatbot.events import DoneEvent, Source, SourcesEvent
from chatbot.providers.base import ChatModel
from chatbot.providers.openai_models import OpenAIChatModel, build_openai_client
from chatbot.providers.registry import Providers
from chatbot.rag.pipeline import AnswerRequest
from chatbot.settings import OpenAISettings
from chatbot.stores.base import QueryVectors, ScoredChunk, VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.fakes import FakeOpenAI, FakeUpstream
from tests.fakes.scripting import Fault, Reply

FIRST = "how do I connect over websocket?"
FOLLOWUP = "and how do I stop it?"
STOP_SECTION = ("Stopping and resuming answers", "Stopping an answer")
REWRITE_PROMPT = "Rewrite the user's last message as one standalone search query"


class RecordingStore:
    """The shared guide store, recording the queries of every search call."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.searches: list[list[QueryVectors]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def search(self, tenant: str, queries: Sequence[QueryVectors], **kwargs: Any) -> list[ScoredChunk]:
        self.searches.append(list(queries))
        return await self.inner.search(tenant, queries, **kwargs)


@contextlib.asynccontextmanager
async def pipeline_services(
    offline: Providers, store: RecordingStore, chat: ChatModel | None = None, **overrides: Any
) -> AsyncIterator[Services]:
    providers = Providers(
        embedder=offline.embedder, sparse=offline.sparse, chat=chat or offline.chat, reranker=None
    )
    # refusals off: the store then sees the retrieval's searches only (rag/confidence.py's check adds its own)
    retrieval = {"refusal_threshold": 0, **overrides.pop("retrieval", {})}
    settings = make_settings(retrieval=retrieval, **overrides)
    async with build_services(settings, providers=providers, store=store) as services:  # type: ignore[arg-type]
        yield services


async def ask(services: Services, conversation_id: str, question: str) -> tuple[Source, ...]:
    request = AnswerRequest(
        tenant="public", question=question, message_id=f"msg_{len(question)}", conversation_id=conversation_id
    )
    async with contextlib.aclosing(services.pipeline.stream_answer(request)) as stream:
        events = [event async for event in stream]
    assert isinstance(events[-1], DoneEvent), events[-1]
    [sources] = [e.sources for e in events if isinstance(e, SourcesEvent)]
    return sources


async def vectors(offline: Providers, text: str) -> QueryVectors:
    assert offline.sparse is not None
    dense = await offline.embedder.embed([text], "query")
    sparse = await offline.sparse.embed_sparse([text], "query")
    return QueryVectors(dense=dense[0], sparse=sparse[0])


@pytest.fixture
def store(guide_store: VectorStore) -> RecordingStore:
    return RecordingStore(guide_store)


class TestOfflineFollowup:
    async def test_followup_retrieves_the_stop_section_with_one_fused_search(
        self, offline_providers: Providers, store: RecordingStore
    ) -> None:
        """'and how do I stop it?' after the websocket question finds the stop section in one fused call."""
        async with pipeline_services(offline_providers, store) as services:
            conversation = await services.conversations.create("public")
            await ask(services, conversation, FIRST)
            sources = await ask(services, conversation, FOLLOWUP)
        assert sources[0].heading_path == STOP_SECTION
        # the follow-up is one search call with two queries: raw and rewritten
        assert [len(queries) for queries in store.searches] == [1, 2]
        raw, rewritten = store.searches[1]
        assert raw == await vectors(offline_providers, FOLLOWUP)
        assert rewritten == await vectors(offline_providers, f"{FIRST} {FOLLOWUP}")

    async def test_rewrite_can_be_switched_off(
        self, offline_providers: Providers, store: RecordingStore
    ) -> None:
        """retrieval.rewrite_followups=false searches the raw follow-up alone."""
        async with pipeline_services(
            offline_providers, store, retrieval={"rewrite_followups": False}
        ) as services:
            conversation = await services.conversations.create("public")
            await ask(services, conversation, FIRST)
            await ask(services, conversation, FOLLOWUP)
        assert [len(queries) for queries in store.searches] == [1, 1]

    async def test_a_standalone_first_question_is_not_rewritten(
        self, offline_providers: Providers, store: RecordingStore
    ) -> None:
        """Without history nothing is rewritten, however short the question."""
        async with pipeline_services(offline_providers, store) as services:
            await ask(services, await services.conversations.create("public"), FOLLOWUP)
        assert [len(queries) for queries in store.searches] == [1]


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeUpstream]:
    async with FakeOpenAI() as fake:
        yield fake
    assert not fake.handler_errors


@pytest.fixture
async def llm(fake_openai: FakeUpstream) -> AsyncIterator[OpenAIChatModel]:
    settings = OpenAISettings(api_key="k", base_url=fake_openai.openai_base_url, timeout=5.0, max_retries=0)
    client = build_openai_client(settings)
    yield OpenAIChatModel(client, settings)
    await client.close()


class TestLlmRewrite:
    async def test_rewrite_goes_through_the_rewrite_prompt(
        self,
        offline_providers: Providers,
        store: RecordingStore,
        llm: OpenAIChatModel,
        fake_openai: FakeUpstream,
    ) -> None:
        """With an LLM the follow-up is rewritten with prompts/rewrite.j2 and its query is searched."""
        standalone = "how do I stop an answer over websocket"
        async with pipeline_services(offline_providers, store, llm) as services:
            conversation = await services.conversations.create("public")
            await ask(services, conversation, FIRST)
            fake_openai.reply = Reply(text=standalone)
            sources = await ask(services, conversation, FOLLOWUP)
        rewrites = [
            body for body in fake_openai.requests_to("/v1/chat/completions") if REWRITE_PROMPT in str(body)
        ]
        [rewrite] = rewrites
        prompt = rewrite["messages"][-1]["content"]
        assert FIRST in prompt
        assert FOLLOWUP in prompt
        raw, rewritten = store.searches[-1]
        assert raw == await vectors(offline_providers, FOLLOWUP)
        assert rewritten == await vectors(offline_providers, standalone)
        assert STOP_SECTION in [s.heading_path for s in sources]

    async def test_failed_rewrite_falls_back(
        self,
        offline_providers: Providers,
        store: RecordingStore,
        llm: OpenAIChatModel,
        fake_openai: FakeUpstream,
    ) -> None:
        """A rewrite that fails upstream (500) uses the offline fallback; the answer still completes."""
        async with pipeline_services(offline_providers, store, llm) as services:
            conversation = await services.conversations.create("public")
            await ask(services, conversation, FIRST)
            fake_openai.inject(Fault.http_status(500, path="/v1/chat/completions"))
            sources = await ask(services, conversation, FOLLOWUP)
        assert fake_openai.pending_faults == 0
        _, rewritten = store.searches[-1]
        assert rewritten == await vectors(offline_providers, f"{FIRST} {FOLLOWUP}")
        assert sources[0].heading_path == STOP_SECTION
