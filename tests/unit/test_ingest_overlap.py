"""The ingestion pipeline (chatbot/ingest/pipeline.py): embedding overlaps writing and parsing, small documents
share batches, a document is finished after its last chunk is written, a failure surfaces as itself. Real
Ingestor and in-memory Qdrant; the embedder is a named fake whose calls can be held to observe the overlap."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from chatbot.errors import UpstreamUnavailable
from chatbot.ingest.service import Ingestor
from chatbot.providers.base import EmbedKind
from chatbot.providers.local_models import BM25SparseEmbedder
from chatbot.settings import QdrantSettings
from chatbot.stores.base import ChunkRecord
from chatbot.stores.qdrant.store import QdrantStore

DIMS = 8


class GatedEmbedder:
    """Deterministic vectors; records each call's texts; `gate` (when set up) holds a call until released."""

    name = "fake/gated"
    dimensions = DIMS
    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(self, *, fail_on_call: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.called = asyncio.Condition()
        self.release: dict[int, asyncio.Event] = {}
        self.fail_on_call = fail_on_call

    def hold(self, call: int) -> asyncio.Event:
        """Hold call number `call` (0-based) until the returned event is set."""
        self.release[call] = asyncio.Event()
        return self.release[call]

    async def calls_reach(self, n: int) -> None:
        async with asyncio.timeout(10), self.called:
            await self.called.wait_for(lambda: len(self.calls) >= n)

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        async with self.called:
            n = len(self.calls)
            self.calls.append(list(texts))
            self.called.notify_all()
        if n in self.release:
            await self.release[n].wait()
        if n == self.fail_on_call:
            raise UpstreamUnavailable("the embedder went away")
        return [vector(t) for t in texts]


def vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 + 0.01 for b in digest[:DIMS]]


class RecordingStore(QdrantStore):
    """The in-memory Qdrant store, logging its writes; an upsert may be held to observe the embedder."""

    def __init__(self) -> None:
        super().__init__(QdrantSettings(path=":memory:", collection="overlap"))
        self.log: list[tuple[str, str]] = []  # (operation, doc_id)
        self.hold_upsert: asyncio.Event | None = None
        self.upserting = asyncio.Event()

    async def upsert(
        self, records: Sequence[ChunkRecord], dense: Sequence[Sequence[float]], sparse: Any = None
    ) -> None:
        self.log += [("upsert", doc) for doc in dict.fromkeys(r.doc_id for r in records)]
        self.upserting.set()
        if self.hold_upsert is not None:
            await self.hold_upsert.wait()
        await super().upsert(records, dense, sparse)

    async def delete_stale(self, tenant: str, doc_id: str, keep_version: str) -> None:
        self.log.append(("finish", doc_id))
        await super().delete_stale(tenant, doc_id, keep_version)

    async def set_version(
        self, ids: Sequence[str], version: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        await super().set_version(ids, version, metadata=metadata)


@pytest.fixture
async def store() -> Any:
    opened = RecordingStore()
    await opened.open()
    await opened.ensure_collection(GatedEmbedder.name, DIMS, sparse=True)
    yield opened
    await opened.aclose()


def write_docs(folder: Path, count: int, sections: int) -> Iterator[Path]:
    for i in range(count):
        body = "\n\n".join(
            f"## Part {s}\n\nDocument {i} section {s} explains topic {i * 100 + s} in a sentence or two."
            for s in range(sections)
        )
        path = folder / f"doc-{i}.md"
        path.write_text(f"# Doc {i}\n\n{body}\n")
        yield path


def ingestor(embedder: GatedEmbedder, store: RecordingStore, batch_size: int) -> Ingestor:
    return Ingestor(embedder=embedder, sparse=BM25SparseEmbedder(), store=store, batch_size=batch_size)


async def test_the_embedder_runs_while_an_upsert_is_held(store: RecordingStore, tmp_path: Path) -> None:
    """With the first upsert held, the embedder still starts the next batch: writes never stall embedding."""
    list(write_docs(tmp_path, 1, 12))
    embedder = GatedEmbedder()
    store.hold_upsert = asyncio.Event()
    second = embedder.hold(1)
    task = asyncio.create_task(ingestor(embedder, store, 2).ingest_paths("t", [tmp_path]))
    await asyncio.wait_for(store.upserting.wait(), 10)
    await embedder.calls_reach(2)  # a serial ingestor would wait for the upsert before embedding again
    store.hold_upsert.set()
    second.set()
    report = await asyncio.wait_for(task, 30)
    assert report.documents[0].written == sum(len(c) for c in embedder.calls)


async def test_small_documents_share_embedding_batches(store: RecordingStore, tmp_path: Path) -> None:
    """Documents of two chunks, batch size 8: while the first call runs the planner parses ahead, and the
    later calls carry chunks of several documents."""
    list(write_docs(tmp_path, 8, 1))
    embedder = GatedEmbedder()
    first = embedder.hold(0)
    task = asyncio.create_task(ingestor(embedder, store, 8).ingest_paths("t", [tmp_path]))
    await embedder.calls_reach(1)
    await asyncio.sleep(0.2)  # the planner fills its queue meanwhile
    first.set()
    report = await asyncio.wait_for(task, 30)
    assert len(report.documents) == 8
    sizes = [len(call) for call in embedder.calls]
    assert sum(sizes) == sum(d.written for d in report.documents)
    assert max(sizes) > max(d.chunks for d in report.documents)  # one call spans several documents
    assert len(embedder.calls) < len(report.documents)


async def test_documents_finish_in_order_after_their_last_chunk(
    store: RecordingStore, tmp_path: Path
) -> None:
    """Each document's old versions are deleted after its last upsert; documents finish in file order."""
    paths = list(write_docs(tmp_path, 5, 4))
    report = await ingestor(GatedEmbedder(), store, 3).ingest_paths("t", [tmp_path])
    assert [d.source for d in report.documents] == [str(p) for p in paths]
    finished = [doc for op, doc in store.log if op == "finish"]
    assert finished == [d.doc_id for d in report.documents]
    for doc in finished:
        last_upsert = max(i for i, entry in enumerate(store.log) if entry == ("upsert", doc))
        assert store.log.index(("finish", doc)) > last_upsert
    again = await ingestor(GatedEmbedder(), store, 3).ingest_paths("t", [tmp_path])
    assert [d.unchanged for d in again.documents] == [True] * 5


async def test_a_failing_embedder_surfaces_as_itself_and_leaves_no_task(
    store: RecordingStore, tmp_path: Path
) -> None:
    """The embedder fails on its second call: ingest_paths raises that error; no pipeline task is left."""
    list(write_docs(tmp_path, 3, 4))
    with pytest.raises(UpstreamUnavailable):
        await ingestor(GatedEmbedder(fail_on_call=1), store, 4).ingest_paths("t", [tmp_path])
    await asyncio.sleep(0)
    assert not [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("ingest-")]


async def test_a_hostile_file_is_skipped_and_the_others_flow(store: RecordingStore, tmp_path: Path) -> None:
    """A file the planner rejects (binary bytes named .md) is reported skipped; the rest are ingested."""
    list(write_docs(tmp_path, 2, 2))
    (tmp_path / "doc-1a-evil.md").write_bytes(b"%PDF-1.4\n\x00\x01garbage" * 10)
    report = await ingestor(GatedEmbedder(), store, 4).ingest_paths("t", [tmp_path])
    assert len(report.documents) == 2
    assert [s.source for s in report.skipped] == [str(tmp_path / "doc-1a-evil.md")]


async def test_a_cancelled_ingestion_cancels_every_stage(store: RecordingStore, tmp_path: Path) -> None:
    """Cancelling ingest_paths while the embedder is held leaves no pipeline task running."""
    list(write_docs(tmp_path, 3, 4))
    embedder = GatedEmbedder()
    embedder.hold(0)
    task = asyncio.create_task(ingestor(embedder, store, 4).ingest_paths("t", [tmp_path]))
    await embedder.calls_reach(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert not [t for t in asyncio.all_tasks() if (t.get_name() or "").startswith("ingest-")]
