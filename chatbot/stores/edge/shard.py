"""Where an Edge shard lives and how it is called: one folder per collection under `<path>/edge/`, a lock
file so one process at a time holds the path (StoreInUse otherwise), the collection's record of the embedding
model that filled it (EmbeddingMismatch for another one), and a worker thread pool so that no Edge call,
which blocks while it searches or writes, ever runs on the serving loop. Searches release the GIL for most of
their time (bench/embedded_scale.py measures it), so the pool lets them use the second core."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

import qdrant_edge as edge

from chatbot.errors import EmbeddingMismatch, StoreInUse

T = TypeVar("T")
META = "chatbot.json"  # next to the shard's own files: what the collection was filled with
ALIASES = "aliases.json"  # collection -> shard folder, once a reindex has switched a collection


class Folder:
    """The embedded store's folder, locked while this process holds it (':memory:': a temporary folder)."""

    def __init__(self, location: str) -> None:
        self._location = location
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self.root = Path(location) / "edge"
        self._lock: IO[str] | None = None

    def acquire(self) -> None:
        if (
            self._location == ":memory:" and self._temporary is None
        ):  # made on open: a store never opened owns nothing
            self._temporary = tempfile.TemporaryDirectory(prefix="chatbot-edge-")
            self.root = Path(self._temporary.name) / "edge"
        self.root.mkdir(parents=True, exist_ok=True)
        lock = (self.root / ".lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StoreInUse(f"The embedded store {self.root.parent} is in use by another process.") from None
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def shard_path(self, collection: str) -> Path:
        """The shard folder serving `collection`: its alias's target after a reindex, else its own name."""
        return self.root / self._aliases().get(collection, collection)

    def point_alias(self, collection: str, target: str) -> None:
        """Serve `collection` from the shard folder `target` from now on (one atomic rename: a crash leaves
        the old alias or the new one, never neither)."""
        aliases = {**self._aliases(), collection: target}
        tmp = self.root / (ALIASES + ".tmp")
        tmp.write_text(json.dumps(aliases))
        os.replace(tmp, self.root / ALIASES)

    def _aliases(self) -> dict[str, str]:
        try:
            found: dict[str, str] = json.loads((self.root / ALIASES).read_text())
        except FileNotFoundError:
            return {}
        return found


def read_meta(shard: Path) -> dict[str, Any] | None:
    """The collection's record, or None when it has not been created."""
    try:
        found: dict[str, Any] = json.loads((shard / META).read_text())
    except FileNotFoundError:
        return None
    return found


def write_meta(shard: Path, meta: dict[str, Any]) -> None:
    tmp = shard / (META + ".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, shard / META)


def check_model(name: str, meta: dict[str, Any], dense_model: str) -> None:
    recorded = meta.get("dense_model")
    if recorded is not None and recorded != dense_model:
        raise EmbeddingMismatch(
            f"Collection '{name}' holds vectors from '{recorded}', but this server embeds with "
            f"'{dense_model}'. Use another collection (CHATBOT_QDRANT__COLLECTION) or the same model."
        )


def config(dimensions: int, *, sparse: bool) -> edge.EdgeConfig:
    """Cosine dense vectors; BM25 vectors with the IDF modifier, applied per query over the searching tenant's
    points only (conditions.idf_corpus), never collection-wide."""
    return edge.EdgeConfig(
        vectors={"dense": edge.EdgeVectorParams(size=dimensions, distance=edge.Distance.Cosine)},
        sparse_vectors={"bm25": edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)} if sparse else None,
    )


class Worker:
    """The threads Edge calls run on (never the serving loop)."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qdrant-edge")

    async def call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._pool.shutdown(wait=True)
