"""Folder sync: new and changed files ingested, deleted ones removed, unchanged ones cost a stat (or a hash)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatbot.ingest.jobs import JobProgress
from chatbot.ingest.service import IngestResult
from chatbot.ingest.sync import LocalSink, manifest_path, sync_folder
from chatbot.wiring import Services


class CountingSink:
    """A Sink that forwards to the real one and records every put and remove."""

    def __init__(self, inner: LocalSink) -> None:
        self.inner = inner
        self.puts: list[str] = []
        self.removes: list[str] = []

    async def put(self, source: str, data: bytes) -> IngestResult:
        self.puts.append(source)
        return await self.inner.put(source, data)

    async def remove(self, doc_id: str) -> int:
        self.removes.append(doc_id)
        return await self.inner.remove(doc_id)


async def nothing() -> None:
    return None


async def run_sync(
    services: Services, root: Path, tenant: str, state: Path
) -> tuple[JobProgress, CountingSink]:
    progress = JobProgress(id="t", tenant=tenant, kind="sync")
    sink = CountingSink(LocalSink(services.ingestor, tenant))
    await sync_folder(
        root, sink, manifest=manifest_path(state, tenant, root), progress=progress, notify=nothing
    )
    return progress, sink


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# A\n\nApples are red and crunchy.\n")
    (root / "sub" / "b.txt").write_text("Bananas are yellow.\n")
    return root


class TestSync:
    async def test_first_run_ingests_every_supported_file(
        self, services: Services, folder: Path, tmp_path: Path
    ) -> None:
        """A first sync ingests each supported file under its relative path."""
        progress, sink = await run_sync(services, folder, "sync-1", tmp_path / "state")
        assert sorted(sink.puts) == ["a.md", "sub/b.txt"]
        docs = await services.store.list_documents("sync-1")
        assert sorted(d.source for d in docs) == ["a.md", "sub/b.txt"]
        assert progress.files_total == progress.files_done == 2

    async def test_unchanged_files_are_not_ingested_again(
        self, services: Services, folder: Path, tmp_path: Path
    ) -> None:
        """A second run over the same files puts nothing; a touched but identical file is hashed, not put."""
        await run_sync(services, folder, "sync-2", tmp_path / "state")
        progress, sink = await run_sync(services, folder, "sync-2", tmp_path / "state")
        assert sink.puts == []
        assert progress.unchanged == 2
        st = (folder / "a.md").stat()
        os.utime(folder / "a.md", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        progress, sink = await run_sync(services, folder, "sync-2", tmp_path / "state")
        assert sink.puts == []
        assert progress.unchanged == 2

    async def test_changed_and_deleted_files(self, services: Services, folder: Path, tmp_path: Path) -> None:
        """A changed file is ingested again; a deleted file's document is removed from the store."""
        await run_sync(services, folder, "sync-3", tmp_path / "state")
        (folder / "a.md").write_text("# A\n\nApples are green now, and sour.\n")
        (folder / "sub" / "b.txt").unlink()
        progress, sink = await run_sync(services, folder, "sync-3", tmp_path / "state")
        assert sink.puts == ["a.md"]
        assert len(sink.removes) == 1
        assert progress.deleted >= 1
        docs = await services.store.list_documents("sync-3")
        assert [d.source for d in docs] == ["a.md"]

    async def test_unsupported_hidden_and_escaping_files(
        self, services: Services, folder: Path, tmp_path: Path
    ) -> None:
        """Unsupported types are skipped with a reason, hidden entries ignored, links out of the folder refused."""
        (folder / "image.bin").write_bytes(b"\x00\x01")
        (folder / ".git").mkdir()
        (folder / ".git" / "notes.md").write_text("# secret\n\nhidden\n")
        outside = tmp_path / "outside.md"
        outside.write_text("# Outside\n\nnot yours\n")
        (folder / "link.md").symlink_to(outside)
        progress, sink = await run_sync(services, folder, "sync-4", tmp_path / "state")
        assert sorted(sink.puts) == ["a.md", "sub/b.txt"]
        reasons = {s["source"]: s["reason"] for s in progress.skipped}
        assert reasons == {"image.bin": "unsupported type", "link.md": "link outside the folder"}

    async def test_a_corrupt_manifest_means_a_full_run(
        self, services: Services, folder: Path, tmp_path: Path
    ) -> None:
        """A manifest that is not valid JSON is ignored (every file checked again), not a crash."""
        state = tmp_path / "state"
        await run_sync(services, folder, "sync-5", state)
        manifest_path(state, "sync-5", folder).write_text("{not json")
        progress, sink = await run_sync(services, folder, "sync-5", state)
        assert sorted(sink.puts) == ["a.md", "sub/b.txt"]
        assert progress.errors == []
