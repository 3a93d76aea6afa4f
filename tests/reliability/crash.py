"""SIGKILL `python -m chatbot ingest` at seeded random points and check what a crash leaves behind.

A lane is one corpus directory and one embedded Qdrant path. Each trial changes some documents (so the run has
work to do), starts the real CLI, kills it with SIGKILL somewhere in its ingestion, checks the crash state
(every document that was complete before still has a complete version), maybe changes or deletes documents
again, runs the ingestion again to completion (in this process or through the CLI) and checks the final state:
every chunk of every document exactly once, all of one version, nothing of old versions or deleted documents.

The collection is inspected with qdrant_client directly (not through chatbot's VectorStore): an independent
reader. Used by tests/reliability/test_crash_ingest.py (CI size) and scripts/crash_ingest.py (full size).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qdrant_client import AsyncQdrantClient

from chatbot.ingest.chunking import chunk_document
from chatbot.ingest.loaders import load_document
from chatbot.ingest.service import Ingestor, expand_paths
from chatbot.providers.registry import Providers
from chatbot.settings import QdrantSettings
from chatbot.stores.factory import vector_store
from chatbot.stores.ids import document_id, point_id

TENANT = "public"
COLLECTION = "documents"
ROOT = Path(__file__).resolve().parents[2]
WORDS = [
    *("qdrant", "vector", "chunk", "answer", "stream", "token", "resume", "websocket", "embed", "batch"),
    *("version", "tenant", "upload", "index", "search", "fusion", "sparse", "dense", "cancel", "grace"),
    *("deadline", "budget", "widget", "origin", "header", "limit", "retry"),
]


@dataclass(frozen=True)
class Point:
    id: str
    doc_id: str
    source: str
    chunk_index: int
    version: str


@dataclass
class Tally:
    trials: int = 0
    killed: int = 0  # SIGKILL landed before the run ended
    finished_first: int = 0  # the run ended before the kill time
    cli_reruns: int = 0
    changed_between: int = 0
    deleted_between: int = 0
    crash_states: collections.Counter[str] = field(default_factory=collections.Counter)


def cli_env(qdrant_path: Path) -> dict[str, str]:
    """The CLI's environment: offline models, this lane's store, small batches (many kill points)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_", "COHERE_", "CO_API"))
    }
    env.update(
        CHATBOT_QDRANT__PATH=str(qdrant_path),
        CHATBOT_QDRANT__COLLECTION=COLLECTION,
        CHATBOT_QDRANT__ENGINE="qdrant-local",  # these tests read the store with qdrant-client's local mode
        CHATBOT_EMBEDDING_PROVIDER="local",
        CHATBOT_CHAT_PROVIDER="extractive",
        CHATBOT_LOCAL__BATCH_SIZE="2",
        CHATBOT_LOCAL__THREADS="1",
        CHATBOT_SERVER__UVLOOP="false",
        OPENBLAS_NUM_THREADS="1",
    )
    return env


class Lane:
    """One corpus directory and one embedded store, driven through kill/rerun trials."""

    def __init__(self, root: Path, rng: random.Random, providers: Providers, *, docs: int = 6) -> None:
        self.docs_dir = root / "docs"
        self.qdrant = root / "qdrant"
        self.docs_dir.mkdir(parents=True, exist_ok=True)
        self.rng = rng
        self.providers = providers
        self.generation: dict[str, int] = {}
        self.names = [f"doc{i}.md" for i in range(docs)]
        self.ingest_seconds = 3.0
        self.log: list[str] = []
        for name in self.names:
            self.write(name)

    # -- the corpus ---------------------------------------------------------------------------------------

    def write(self, name: str) -> None:
        """(Re)write a document: ~10 sections of ~800 characters; each generation has other words, sizes."""
        gen = self.generation.get(name, -1) + 1
        self.generation[name] = gen
        rng = random.Random(f"{name}/{gen}")
        sections = rng.randint(7, 12)
        parts = [f"# {name} generation {gen}\n"]
        for s in range(sections):
            sentence = " ".join(rng.choice(WORDS) for _ in range(110))
            parts.append(f"\n## Part {s}\n\n{sentence.capitalize()}.\n")
        (self.docs_dir / name).write_text("".join(parts))

    def delete_file(self, name: str) -> str:
        (self.docs_dir / name).unlink()
        return document_id(TENANT, self.source(name))

    def present(self) -> list[str]:
        return [n for n in self.names if (self.docs_dir / n).exists()]

    def source(self, name: str) -> str:
        return str(self.docs_dir / name)  # the CLI's source: the path as it was given

    def expected(self) -> dict[str, tuple[set[str], str]]:
        """doc_id -> (point ids, version) that a complete ingestion of the current files stores."""
        out: dict[str, tuple[set[str], str]] = {}
        for name in self.present():
            source = self.source(name)
            chunks = chunk_document(load_document(source, (self.docs_dir / name).read_bytes()))
            ids = [point_id(TENANT, source, c.index, c.content_hash) for c in chunks]
            out[document_id(TENANT, source)] = (
                set(ids),
                hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16],
            )
        return out

    # -- the store --------------------------------------------------------------------------------------

    async def inventory(self) -> dict[str, list[Point]]:
        """Every point of the collection by doc_id, read with qdrant_client (also proves the lock is free)."""
        client = AsyncQdrantClient(path=str(self.qdrant))
        try:
            found: dict[str, list[Point]] = collections.defaultdict(list)
            offset = None
            while True:
                points, offset = await client.scroll(COLLECTION, limit=512, offset=offset, with_payload=True)
                for p in points:
                    pl = p.payload or {}
                    found[str(pl["doc_id"])].append(
                        Point(
                            str(p.id),
                            str(pl["doc_id"]),
                            str(pl["source"]),
                            int(pl["chunk_index"]),
                            str(pl["version"]),
                        )
                    )
                if offset is None:
                    return dict(found)
        finally:
            await client.close()

    async def dense_model(self) -> str | None:
        client = AsyncQdrantClient(path=str(self.qdrant))
        try:
            info = await client.get_collection(COLLECTION)
            return (info.config.metadata or {}).get("dense_model")
        finally:
            await client.close()

    # -- runs -------------------------------------------------------------------------------------------

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "chatbot", *args]

    async def run_cli(self, *args: str, kill_after: float | None = None) -> tuple[int | None, str, float]:
        """Run the CLI; with kill_after, SIGKILL it that long after its ingestion starts (its progress bar
        appears). Returns (exit code or None when killed, stderr, seconds from the bar to the end)."""
        err_path = self.qdrant.parent / "stderr.txt"
        with err_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *self.cli(*args),
                env=cli_env(self.qdrant),
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
            started = None
            deadline = time.monotonic() + 120
            while proc.returncode is None and time.monotonic() < deadline:
                if started is None and b"ingest:" in err_path.read_bytes():
                    started = time.monotonic()
                if (
                    started is not None
                    and kill_after is not None
                    and time.monotonic() - started >= kill_after
                ):
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
                    return None, err_path.read_text(errors="replace"), time.monotonic() - started
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.005)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
                raise TimeoutError("the ingest CLI ran for 120 s")
        took = time.monotonic() - started if started is not None else 0.0
        return proc.returncode, err_path.read_text(errors="replace"), took

    async def ingest_cli(self) -> None:
        code, err, took = await self.run_cli("ingest", str(self.docs_dir))
        assert code == 0, err[-2000:]
        self.ingest_seconds = max(self.ingest_seconds * 0.5, took)

    async def ingest_here(self) -> None:
        """What `python -m chatbot ingest DIR` does, in this process (the model is already loaded here)."""
        store = vector_store(
            QdrantSettings(path=str(self.qdrant), collection=COLLECTION, engine="qdrant-local")
        )
        await store.open()
        try:
            embedder = self.providers.embedder
            await store.ensure_collection(
                embedder.name, embedder.dimensions, sparse=self.providers.sparse is not None
            )
            ingestor = Ingestor(embedder=embedder, sparse=self.providers.sparse, store=store, batch_size=2)
            for path in expand_paths([self.docs_dir]):
                await ingestor.ingest_paths(TENANT, [path])
        finally:
            await store.aclose()

    async def delete_document(self, doc_id: str, *, via_cli: bool) -> None:
        if via_cli:
            code, err, _ = await self.run_cli("documents", "delete", doc_id)
            assert code == 0, err[-2000:]
            return
        store = vector_store(
            QdrantSettings(path=str(self.qdrant), collection=COLLECTION, engine="qdrant-local")
        )
        await store.open()
        try:
            await store.delete_document(TENANT, doc_id)
        finally:
            await store.aclose()

    # -- checks -----------------------------------------------------------------------------------------

    async def check_complete(self) -> None:
        """Every chunk of every document exactly once, of its current version; nothing else."""
        stored = await self.inventory()
        expected = self.expected()
        assert set(stored) == set(expected), f"documents {sorted(stored)} != expected {sorted(expected)}"
        for doc_id, (ids, version) in expected.items():
            points = stored[doc_id]
            got = [p.id for p in points]
            assert len(got) == len(set(got)), f"{doc_id}: a point twice"
            assert set(got) == ids, (
                f"{doc_id}: {len(set(got) - ids)} orphan, {len(ids - set(got))} missing chunks"
            )
            keys = [(p.source, p.chunk_index) for p in points]
            assert len(keys) == len(set(keys)), f"{doc_id}: duplicate (source, chunk_index)"
            assert sorted(p.chunk_index for p in points) == list(range(len(ids))), f"{doc_id}: chunk indexes"
            assert {p.version for p in points} == {version}, (
                f"{doc_id}: versions { ({p.version for p in points}) }"
            )

    async def check_crashed(
        self, before: dict[str, list[Point]], target: dict[str, tuple[set[str], str]]
    ) -> str:
        """After a kill: each document complete before the run still has a whole version (the old one, or the
        new one fully written). Returns a label of the state seen, for the tally."""
        stored = await self.inventory()
        states = []
        for doc_id, old_points in before.items():
            now = {p.id for p in stored.get(doc_id, [])}
            old = {p.id for p in old_points}
            new = target.get(doc_id, (set(), ""))[0]
            assert old <= now or (new and new <= now), (
                f"{doc_id}: neither its old nor its new version is whole"
            )
            states.append("old+partial" if old <= now and not new <= now else "new")
        return "mixed" if len(set(states)) > 1 else (states[0] if states else "empty")

    # -- one trial --------------------------------------------------------------------------------------

    async def trial(self, tally: Tally, *, cli_rerun: bool) -> None:
        rng = self.rng
        for name in self.names:  # bring back a deleted document now and then; always change some
            if not (self.docs_dir / name).exists() and rng.random() < 0.7:
                self.write(name)
        for name in rng.sample(self.present(), k=rng.randint(1, 3)):
            self.write(name)
        before = await self.inventory()
        target = self.expected()
        kill_after = rng.uniform(0, self.ingest_seconds * 1.1)
        code, err, _ = await self.run_cli("ingest", str(self.docs_dir), kill_after=kill_after)
        if code is None:
            tally.killed += 1
            tally.crash_states[await self.check_crashed(before, target)] += 1
        else:
            assert code == 0, err[-2000:]
            tally.finished_first += 1
        roll = rng.random()
        if roll < 0.3:  # the content changes between the killed run and the rerun
            for name in rng.sample(self.present(), k=rng.randint(1, 2)):
                self.write(name)
            tally.changed_between += 1
        elif roll < 0.55 and len(self.present()) > 2:  # a document is deleted between them
            name = rng.choice(self.present())
            await self.delete_document(self.delete_file(name), via_cli=rng.random() < 0.3)
            tally.deleted_between += 1
        if cli_rerun:
            await self.ingest_cli()
            tally.cli_reruns += 1
        else:
            await self.ingest_here()
        await self.check_complete()
        tally.trials += 1


async def run_lanes(root: Path, providers: Providers, *, seed: int, runs: int, lanes: int = 2) -> Tally:
    """`runs` trials over `lanes` concurrent lanes (two cores: one CLI starting while the other ingests)."""
    tally = Tally()

    async def lane_main(n: int) -> None:
        lane = Lane(root / f"lane{n}", random.Random(f"{seed}/{n}"), providers)
        await lane.ingest_cli()  # the first, uninterrupted run; also measures how long ingestion takes
        await lane.check_complete()
        for i in range(n, runs, lanes):
            await lane.trial(tally, cli_rerun=i % 5 == 0)

    await asyncio.gather(*(lane_main(n) for n in range(lanes)))
    return tally
