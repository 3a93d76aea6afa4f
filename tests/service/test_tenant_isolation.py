"""Tenant isolation in the vector store, ingestion and the pipeline: tenants with overlapping documents (same
file names, similar text, tenant-specific secrets) never see, change or delete each other's chunks."""

from __future__ import annotations

import contextlib
import inspect
import uuid
from dataclasses import dataclass

import pytest

from chatbot.events import SourcesEvent
from chatbot.ingest.service import Ingestor, IngestResult
from chatbot.providers.registry import Providers
from chatbot.rag.pipeline import AnswerRequest
from chatbot.settings import QdrantSettings
from chatbot.stores.base import QueryVectors, SearchMode, VectorStore
from chatbot.stores.edge.store import EdgeStore
from chatbot.stores.ids import document_id
from chatbot.stores.qdrant.conditions import tenant_filter
from chatbot.stores.qdrant.mirror import MirroredStore
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.wiring import build_services
from tests.conftest import GUIDE, make_settings

MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")
QUESTION = "What is the vault code, and who may open the vault?"


@dataclass(frozen=True)
class Tenant:
    name: str
    company: str
    secret: str

    def files(self) -> dict[str, bytes]:
        """The same file names for every tenant; the texts differ only in names and the secret."""
        return {
            "handbook.md": (
                f"# Handbook\n\n## Vault\n\nThe vault code of {self.company} is {self.secret}. Only staff of "
                f"{self.company} may open the vault.\n\n## Parking\n\nVisitors park behind the building.\n"
            ).encode(),
            "faq.txt": f"To reset the vault code ({self.secret}), ask {self.company} security.".encode(),
            "shared.md": b"# Opening hours\n\nThe office opens at nine and closes at five.\n",  # same bytes
        }


def pair() -> tuple[Tenant, Tenant]:
    suffix = uuid.uuid4().hex[:8]
    return (
        Tenant(f"iso-acme-{suffix}", "Acme", f"ALPHA-{suffix}"),
        Tenant(f"iso-globex-{suffix}", "Globex", f"BRAVO-{suffix}"),
    )


async def ingest(
    ingestor: Ingestor, tenant: Tenant, files: dict[str, bytes] | None = None
) -> list[IngestResult]:
    return [
        await ingestor.ingest_bytes(tenant.name, name, data)
        for name, data in (files or tenant.files()).items()
    ]


@pytest.fixture
def ingestor(offline_providers: Providers, guide_store: VectorStore) -> Ingestor:
    return Ingestor(embedder=offline_providers.embedder, sparse=offline_providers.sparse, store=guide_store)


async def query(providers: Providers, text: str) -> QueryVectors:
    assert providers.sparse is not None
    dense = await providers.embedder.embed([text], "query")
    sparse = await providers.sparse.embed_sparse([text], "query")
    return QueryVectors(dense=dense[0], sparse=sparse[0])


class TestTenantIsRequired:
    @pytest.mark.parametrize("missing", ["", None])
    def test_tenant_filter_refuses_a_missing_tenant(self, missing: str | None) -> None:
        """tenant_filter('') (or None) raises instead of building a filter that matches every tenant."""
        with pytest.raises(ValueError, match="tenant is required"):
            tenant_filter(missing)  # type: ignore[arg-type]

    @pytest.mark.parametrize("layer", ["edge", "mirrored", "qdrant"])
    async def test_every_read_and_delete_refuses_an_empty_tenant(
        self, guide_store: VectorStore, offline_providers: Providers, layer: str
    ) -> None:
        """search (even with nothing to search), list, count and both deletes raise on an empty tenant, on
        Qdrant Edge (the default), through the mirror and on qdrant-client itself, and nothing is deleted."""
        async with contextlib.AsyncExitStack() as stack:
            if layer == "edge":
                assert isinstance(guide_store, EdgeStore)
                store: VectorStore = guide_store
            else:
                mirrored = MirroredStore(
                    QdrantStore(QdrantSettings(path=":memory:", collection="empty-tenant"))
                )
                await mirrored.open()
                stack.push_async_callback(mirrored.aclose)
                await mirrored.ensure_collection(
                    offline_providers.embedder.name, offline_providers.embedder.dimensions, sparse=True
                )
                ingestor = Ingestor(
                    embedder=offline_providers.embedder, sparse=offline_providers.sparse, store=mirrored
                )
                await ingestor.ingest_paths("public", [GUIDE / "websocket.md"], root=GUIDE)
                store = mirrored if layer == "mirrored" else mirrored.qdrant
            await self.refuses_an_empty_tenant(store, offline_providers)

    async def refuses_an_empty_tenant(self, store: VectorStore, offline_providers: Providers) -> None:
        before = await store.count("public")
        assert before
        vectors = await query(offline_providers, QUESTION)
        calls = [
            store.search("", [vectors], mode="hybrid", limit=5),
            store.search("", [], mode="hybrid", limit=5),
            store.list_documents(""),
            store.count(""),
            store.delete_document("", document_id("public", "websocket.md")),
            store.delete_stale("", document_id("public", "websocket.md"), "v"),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="tenant is required"):
                await call
        assert await store.count("public") == before

    @pytest.mark.parametrize("store_class", [VectorStore, QdrantStore, MirroredStore, EdgeStore])
    def test_every_public_method_that_reads_or_deletes_takes_a_tenant_first(self, store_class: type) -> None:
        """Each public store coroutine takes `tenant` first, except lifecycle and writes by point id.

        versions_of, set_version and delete_points address points by id, and ids are uuid5(tenant, source,
        ...): a caller cannot name another tenant's point without knowing its tenant. upsert writes records
        that carry their tenant. QdrantStore.run runs one client call for the answer cache (its own
        collection, its own tenant filters); EdgeStore.open_shard opens the answer cache's shard. recorded_model,
        promote and discard are the collection's lifecycle (start-up and the admin's reindex), reading or dropping
        whole collections."""
        by_id_or_lifecycle = {
            "open",
            "aclose",
            "ensure_collection",
            "recorded_model",
            "promote",
            "discard",
            "ping",
            "run",
            "versions_of",
            "set_version",
            "delete_points",
            "upsert",
            "open_shard",  # EdgeStore: another shard of its folder (the answer cache)
        }
        for name, method in inspect.getmembers(store_class, inspect.iscoroutinefunction):
            if name.startswith("_") or name in by_id_or_lifecycle:
                continue
            params = list(inspect.signature(method).parameters)
            assert params[1:2] == ["tenant"], (
                f"{store_class.__name__}.{name} must take the tenant first: {params}"
            )


class TestOverlappingDocuments:
    async def test_same_file_names_are_separate_documents(
        self, ingestor: Ingestor, guide_store: VectorStore
    ) -> None:
        """Each tenant's copy of a file has its own doc_id and chunks, even when the bytes are identical."""
        a, b = pair()
        results_a = await ingest(ingestor, a)
        results_b = await ingest(ingestor, b)
        assert all(r.written == r.chunks > 0 for r in results_a + results_b)  # nothing of A counted as B's
        assert {r.doc_id for r in results_a}.isdisjoint(r.doc_id for r in results_b)
        listed_a = await guide_store.list_documents(a.name)
        listed_b = await guide_store.list_documents(b.name)
        assert [d.source for d in listed_a] == [d.source for d in listed_b] == sorted(a.files())
        assert {d.doc_id for d in listed_a} == {r.doc_id for r in results_a}
        assert {d.doc_id for d in listed_b} == {r.doc_id for r in results_b}

    @pytest.mark.parametrize("mode", MODES)
    async def test_search_sees_only_the_callers_chunks(
        self, ingestor: Ingestor, guide_store: VectorStore, offline_providers: Providers, mode: SearchMode
    ) -> None:
        """Searching for the vault code in any mode finds the caller's secret and never the other's."""
        a, b = pair()
        await ingest(ingestor, a)
        await ingest(ingestor, b)
        # A's own words and secret, asked by B (the raw and a "rewritten" query fused, as the pipeline does)
        queries = [
            await query(offline_providers, QUESTION),
            await query(offline_providers, f"{a.company} {a.secret}"),
        ]
        found = await guide_store.search(b.name, queries, mode=mode, limit=50, prefetch_limit=200)
        texts = " ".join(s.text for s in found)
        assert b.secret in texts
        assert a.secret not in texts
        assert {s.doc_id for s in found} <= {document_id(b.name, name) for name in b.files()}

    async def test_delete_by_another_tenants_doc_id_removes_nothing(
        self, ingestor: Ingestor, guide_store: VectorStore
    ) -> None:
        """delete_document and delete_stale scoped to B never touch A's document, even given its id."""
        a, b = pair()
        results_a = await ingest(ingestor, a)
        await ingest(ingestor, b)
        before_a, before_b = await guide_store.count(a.name), await guide_store.count(b.name)
        handbook_a = next(r for r in results_a if r.source == "handbook.md")
        assert await guide_store.delete_document(b.name, handbook_a.doc_id) == 0
        await guide_store.delete_stale(b.name, handbook_a.doc_id, "no-such-version")
        assert (await guide_store.count(a.name), await guide_store.count(b.name)) == (before_a, before_b)

    async def test_reingest_of_one_tenant_leaves_the_other_alone(
        self, ingestor: Ingestor, guide_store: VectorStore
    ) -> None:
        """A re-ingests a changed handbook: A's old version goes, B's copy keeps its version and chunks."""
        a, b = pair()
        await ingest(ingestor, a)
        await ingest(ingestor, b)
        docs_b = await guide_store.list_documents(b.name)
        changed = {"handbook.md": a.files()["handbook.md"].replace(b"behind the building", b"in the garage")}
        [result] = await ingest(ingestor, a, changed)
        assert not result.unchanged
        assert await guide_store.list_documents(b.name) == docs_b
        again = await ingest(ingestor, b)
        assert all(r.unchanged for r in again)


class TestPipeline:
    async def test_answer_cites_only_the_callers_documents(
        self, ingestor: Ingestor, guide_store: VectorStore, offline_providers: Providers
    ) -> None:
        """An answer for B about the vault quotes B's secret; A's never reaches its sources or text."""
        a, b = pair()
        await ingest(ingestor, a)
        await ingest(ingestor, b)
        async with build_services(
            make_settings(), providers=offline_providers, store=guide_store
        ) as services:
            request = AnswerRequest(tenant=b.name, question=f"{QUESTION} {a.company}", message_id="msg_iso")
            async with contextlib.aclosing(services.pipeline.stream_answer(request)) as stream:
                events = [event async for event in stream]
        [sources] = [e.sources for e in events if isinstance(e, SourcesEvent)]
        everything = repr(events)
        assert sources
        assert b.secret in everything
        assert a.secret not in everything
