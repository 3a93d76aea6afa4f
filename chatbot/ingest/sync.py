"""Mirror a folder into the store incrementally: new and changed files are ingested, deleted files removed.

A manifest (JSON, one per tenant and folder, under jobs.state_dir) remembers each file's size, mtime and
sha256 and the document id it became. A file whose size and mtime match costs one stat; one whose stat
changed but whose bytes did not costs a read and a hash; only changed bytes are parsed and embedded. The
manifest is written after every run, also a cancelled or failed one, so the next run resumes where this one
stopped. Symbolic links are not followed out of the folder and hidden entries (.git, .DS_Store) are skipped.
Where documents go is a Sink: the local Ingestor, or a running server's API (the CLI, cli_remote.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chatbot.errors import ChatbotError
from chatbot.ingest.jobs import JobProgress, Notify
from chatbot.ingest.loaders import SUPPORTED_SUFFIXES
from chatbot.ingest.service import Ingestor, IngestResult

MANIFEST_VERSION = 1


class Sink(Protocol):
    """Where a sync puts documents and removes them."""

    async def put(self, source: str, data: bytes) -> IngestResult: ...

    async def remove(self, doc_id: str) -> int: ...


class LocalSink:
    """Documents into this process's store through the Ingestor."""

    def __init__(self, ingestor: Ingestor, tenant: str, *, on_chunks: Any = None) -> None:
        self._ingestor, self._tenant, self._on_chunks = ingestor, tenant, on_chunks

    async def put(self, source: str, data: bytes) -> IngestResult:
        return await self._ingestor.ingest_bytes(self._tenant, source, data, on_chunks=self._on_chunks)

    async def remove(self, doc_id: str) -> int:
        return await self._ingestor.delete(self._tenant, doc_id)


@dataclass(frozen=True, slots=True)
class Seen:
    size: int
    mtime_ns: int


def manifest_path(state_dir: Path, tenant: str, root: Path) -> Path:
    """The manifest of `root` for `tenant` (also names the server, for a sync through its API)."""
    key = hashlib.sha256(f"{tenant}\0{root.resolve()}".encode()).hexdigest()[:24]
    return state_dir / f"{key}.json"


def scan(root: Path) -> tuple[dict[str, tuple[Path, Seen]], list[tuple[str, str]]]:
    """Every regular file below `root` as {relative posix path: (path, stat)}, and the skipped ones."""
    found: dict[str, tuple[Path, Seen]] = {}
    skipped: list[tuple[str, str]] = []
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if name.startswith("."):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                skipped.append((rel, "link outside the folder"))
                continue
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                skipped.append((rel, "unsupported type"))
                continue
            try:
                st = path.stat()
            except OSError:
                skipped.append((rel, "unreadable"))
                continue
            found[rel] = (path, Seen(st.st_size, st.st_mtime_ns))
    return found, skipped


def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict) or raw.get("version") != MANIFEST_VERSION:
        return {}
    files = raw.get("files")
    return files if isinstance(files, dict) else {}


def save_manifest(path: Path, files: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "files": files}, sort_keys=True))
    tmp.replace(path)  # atomic: a crash leaves the old manifest or the new one


def _read_and_hash(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


async def sync_folder(
    root: Path, sink: Sink, *, manifest: Path, progress: JobProgress, notify: Notify
) -> None:
    """Make the sink hold exactly the supported files of `root` (see the module docstring)."""
    if not await asyncio.to_thread(root.is_dir):
        raise ChatbotError(f"{root} is not a folder.", code="not_a_folder")
    found, skipped = await asyncio.to_thread(scan, root)
    old = await asyncio.to_thread(load_manifest, manifest)
    new: dict[str, dict[str, Any]] = {}
    progress.files_total = len(found)
    for rel, reason in skipped:
        progress.add_skipped(rel, reason)
    await notify()
    try:
        for rel, (path, seen) in found.items():
            prev = old.get(rel)
            if prev and prev.get("size") == seen.size and prev.get("mtime_ns") == seen.mtime_ns:
                new[rel] = prev  # one stat
                progress.unchanged += 1
                progress.files_done += 1
                continue
            try:
                data, digest = await asyncio.to_thread(_read_and_hash, path)
            except OSError:
                progress.add_error(rel, ChatbotError("The file could not be read.", code="unreadable"))
                continue
            entry = {"size": seen.size, "mtime_ns": seen.mtime_ns, "sha256": digest}
            if prev and prev.get("sha256") == digest:
                new[rel] = {**prev, **entry}  # a stat and a hash
                progress.unchanged += 1
                progress.files_done += 1
                continue
            try:
                result = await sink.put(rel, data)
            except ChatbotError as exc:
                progress.add_error(rel, exc)
                if prev:
                    new[rel] = prev  # still the old version in the store; retried next run
                continue
            new[rel] = {**entry, "doc_id": result.doc_id}
            progress.add_result(result)
            await notify()
        for rel, prev in old.items():
            if rel in found or not prev.get("doc_id"):
                continue
            try:
                progress.deleted += await sink.remove(str(prev["doc_id"]))
            except ChatbotError as exc:
                progress.add_error(rel, exc)
                new[rel] = prev  # try again next run
        await notify()
    except BaseException:
        for rel, prev in old.items():  # interrupted: what was not reached keeps its old entry
            new.setdefault(rel, prev)
        raise
    finally:
        with contextlib.suppress(OSError):
            await asyncio.shield(asyncio.to_thread(save_manifest, manifest, new))
