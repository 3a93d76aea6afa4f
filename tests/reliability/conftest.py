"""Reliability fixtures: a fake upstream whose faults are chosen by the question itself (so concurrent turns
stay reproducible), a vector store with scripted outages, and stores of our own (these suites write)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from chatbot.app import create_app
from chatbot.errors import VectorStoreUnavailable
from chatbot.ingest.service import Ingestor
from chatbot.providers.registry import Providers
from chatbot.settings import QdrantSettings, Settings
from chatbot.stores.base import MetadataFilter, QueryVectors, ScoredChunk, SearchMode, VectorStore
from chatbot.stores.factory import vector_store
from chatbot.stores.qdrant.mirror import MirroredStore
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.wiring import Services, build_services
from tests.conftest import GUIDE, make_settings
from tests.fakes.httpserver import ClientGone, Connection, Request
from tests.fakes.scripting import Fault
from tests.fakes.upstream import FakeUpstream
from tests.serving import serve_app

DOWN_TENANT = "chaos-down"
_MARK = re.compile(r"chaos\{(embed|chat)\|([^}]*)\}")
SMALL_DOCS = ("websocket.md", "http-api.md", "stopping-and-resuming.md")


def chaos_mark(target: Literal["embed", "chat"], spec: str) -> str:
    """A marker to put in a question: the fake applies `spec` (Fault.parse syntax) to that request."""
    return f"chaos{{{target}|{spec}}}"


class MarkedFaultUpstream(FakeUpstream):
    """A fake upstream that takes each request's fault from a marker in its body (`chaos{chat|drop_after=3}`),
    so many turns can run at once and each still gets the fault its seed chose."""

    def _take_fault(self, request: Request) -> Fault | None:
        target = "embed" if request.path.endswith("/embeddings") else "chat"
        for match in _MARK.finditer(request.body.decode("utf-8", "replace")):
            if match.group(1) == target:
                return Fault.parse(match.group(2))
        return super()._take_fault(request)

    async def _stream(self, conn: Connection, request: Request, *args: Any) -> None:
        """As the base class, but a client that left while we were writing counts as closed by the client (the
        base class only notices a close seen by its reader, and forgets the record once a write fails)."""
        try:
            await super()._stream(conn, request, *args)  # type: ignore[arg-type]
        except ClientGone:
            for record in reversed(self.streams):
                if record.started_at == request.received_at and not record.ended:
                    record.client_closed_at = time.monotonic()
            raise


class ScriptedOutageStore(MirroredStore):
    """A real store whose search() raises VectorStoreUnavailable for the scripted tenants ("Qdrant down")."""

    def __init__(self, settings: QdrantSettings, *, down_tenants: Sequence[str] = (DOWN_TENANT,)) -> None:
        super().__init__(QdrantStore(settings))
        self.down_tenants = frozenset(down_tenants)
        self.outages = 0

    async def search(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        *,
        mode: SearchMode,
        limit: int,
        prefetch_limit: int = 40,
        score_threshold: float | None = None,
        fusion: Literal["rrf", "dbsf"] = "rrf",
        where: MetadataFilter | None = None,
    ) -> list[ScoredChunk]:
        if tenant in self.down_tenants:
            self.outages += 1
            raise VectorStoreUnavailable(provider="qdrant")
        return await super().search(
            tenant,
            queries,
            mode=mode,
            limit=limit,
            prefetch_limit=prefetch_limit,
            score_threshold=score_threshold,
            fusion=fusion,
            where=where,
        )


async def open_store(
    store: VectorStore, providers: Providers, docs: Sequence[str] = SMALL_DOCS
) -> VectorStore:
    """Open `store`, create its collection for `providers`, ingest some guide pages for tenant 'public'."""
    await store.open()
    await store.ensure_collection(
        providers.embedder.name, providers.embedder.dimensions, sparse=providers.sparse is not None
    )
    ingestor = Ingestor(embedder=providers.embedder, sparse=providers.sparse, store=store)
    await ingestor.ingest_paths("public", [GUIDE / name for name in docs], root=GUIDE)
    return store


@pytest.fixture(scope="session")
def small_store(offline_providers: Providers) -> Iterator[VectorStore]:
    """An in-memory store of our own (the fuzzers upload into it), holding three guide pages."""
    store = vector_store(QdrantSettings(path=":memory:", collection="reliability"))
    asyncio.run(open_store(store, offline_providers))
    yield store
    asyncio.run(store.aclose())


@contextlib.asynccontextmanager
async def serve_services(
    settings: Settings, providers: Providers, store: VectorStore
) -> AsyncIterator[tuple[str, Services]]:
    """Services on `store` and the real app on hypercorn; yields (base URL, services)."""
    async with (
        build_services(settings, providers=providers, store=store) as svc,
        serve_app(create_app(settings, services=svc)) as url,
    ):
        yield url, svc


@pytest.fixture
async def own_served(
    offline_providers: Providers, small_store: VectorStore
) -> AsyncIterator[tuple[str, Services]]:
    """The offline app on our own store."""
    async with serve_services(make_settings(), offline_providers, small_store) as served:
        yield served


def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parents[1] / "artifacts"
    path.mkdir(exist_ok=True)
    return path


def tally_line(tally: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])))


def json_or_none(raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw)
    except ValueError:
        return None
