"""Shared fixtures. Heavy parts (the ONNX model, a Qdrant store with the user guide) load once per session;
every test gets its own services (answers, event log, conversations) on its own event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from chatbot.providers.registry import Providers
from chatbot.settings import Settings
from chatbot.stores.base import VectorStore
from chatbot.stores.factory import vector_store
from chatbot.wiring import Services, build_services
from tests.serving import serve_app

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide"


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: offline providers, an in-memory store, no environment surprises."""
    base: dict[str, Any] = {
        "embedding_provider": "local",
        "chat_provider": "extractive",
        "qdrant": {"path": ":memory:", "collection": "test"},
        "stream": {"grace_seconds": 5, "coalesce_ms": 5},
        "server": {"shutdown_seconds": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def offline_providers() -> Iterator[Providers]:
    from chatbot.providers.extractive import ExtractiveChatModel
    from chatbot.providers.local_models import BM25SparseEmbedder, LocalEmbedder

    settings = make_settings()
    embedder = LocalEmbedder(settings.local)
    yield Providers(
        embedder=embedder,
        sparse=BM25SparseEmbedder(),
        chat=ExtractiveChatModel(settings.local, embedder=embedder),  # as the registry wires it offline
        reranker=None,
    )
    embedder.close()


@pytest.fixture(scope="session")
def guide_store(offline_providers: Providers) -> Iterator[VectorStore]:
    """One in-memory store holding the user guide for tenant 'public'; tests that write use their own tenant."""
    from chatbot.ingest.service import Ingestor

    settings = make_settings()
    store: VectorStore = vector_store(settings.qdrant)

    async def setup() -> None:
        await store.open()
        await store.ensure_collection(
            offline_providers.embedder.name, offline_providers.embedder.dimensions, sparse=True
        )
        ingestor = Ingestor(embedder=offline_providers.embedder, sparse=offline_providers.sparse, store=store)
        await ingestor.ingest_paths("public", [GUIDE], root=GUIDE)

    asyncio.run(setup())
    yield store
    asyncio.run(store.aclose())


@pytest.fixture
def settings() -> Settings:
    return make_settings()


ServicesFactory = Callable[..., Any]


@pytest.fixture
async def services(
    settings: Settings, offline_providers: Providers, guide_store: VectorStore
) -> AsyncIterator[Services]:
    async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
        yield svc


@pytest.fixture
async def served(services: Services) -> AsyncIterator[str]:
    """The real app on hypercorn at 127.0.0.1:<free port>; yields the base URL (http://...)."""
    from chatbot.app import create_app

    async with serve_app(create_app(services.settings, services=services)) as base_url:
        yield base_url


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every test leaves no asyncio task behind on its loop."""
    yield
    current = asyncio.current_task()
    for _ in range(50):
        leftover = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leftover:
            return
        await asyncio.sleep(0.02)
    names = sorted(t.get_name() + ":" + repr(t.get_coro()) for t in leftover)
    raise AssertionError(f"tasks left behind: {names}")
