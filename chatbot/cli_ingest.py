"""CLI commands that change documents: ingest (files, folders, URLs), sync, documents list/delete.

Each runs on the embedded store when it is free, or through a running server's API when one holds it (or
when --server / CHATBOT_SERVER_URL names one): the same summary either way, and a clear error, never a
traceback, when neither works (see cli_remote.py).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

from chatbot.cli_remote import RemoteServer, find_server
from chatbot.errors import ChatbotError, ConfigError, StoreInUse
from chatbot.ingest.jobs import JobProgress
from chatbot.ingest.service import IngestResult
from chatbot.settings import Settings

NO_SERVER_HINT = (
    " If a server is running on it, pass its URL with --server (or CHATBOT_SERVER_URL); otherwise stop the"
    " other process."
)


class Server(NamedTuple):
    """A server named on the command line or in the environment (url None: the one holding the store, if
    any), and the API key to present to it."""

    url: str | None
    api_key: str | None


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


async def through_store_or_server(
    settings: Settings,
    server: Server,
    tenant: str | None,
    local: Callable[[Any], Awaitable[None]],
    remote: Callable[[RemoteServer], Awaitable[None]],
) -> None:
    """Run `remote` against the server that holds the store (or was named), else `local` on the services."""
    from chatbot.wiring import build_services

    url = find_server(settings, server.url)
    if url is not None:
        print(f"(through the server at {url})", file=sys.stderr)
        async with RemoteServer(url, api_key=server.api_key, tenant=tenant) as api:
            await remote(api)
        return
    try:
        async with build_services(settings) as services:
            await local(services)
    except StoreInUse as exc:
        raise StoreInUse(exc.message + NO_SERVER_HINT) from None


class Tally:
    """The CLI summary of an ingest: files, chunks, written, unchanged, failed (same local or remote)."""

    def __init__(self) -> None:
        self.files = self.chunks = self.written = self.failed = self.skipped = 0

    def add(self, result: IngestResult) -> None:
        self.files += 1
        self.chunks += result.chunks
        self.written += result.written

    def fail(self, source: str, err: ChatbotError) -> None:
        self.failed += 1
        print(f"error: {source}: {err.code}: {err.message}", file=sys.stderr)

    def skip(self, source: str, code: str, reason: str) -> None:
        self.skipped += 1
        print(f"skipped {source}: {reason} ({code})", file=sys.stderr)

    def line(self) -> str:
        unchanged = self.chunks - self.written
        text = f"{self.files} files, {self.chunks} chunks, {self.written} written, {unchanged} unchanged"
        text += f", {self.skipped} skipped" if self.skipped else ""
        return text + (f", {self.failed} failed" if self.failed else "")


async def ingest(
    settings: Settings,
    targets: list[str],
    tenant: str | None,
    server: Server,
    metadata: dict[str, Any] | None = None,
) -> None:
    from tqdm import tqdm

    from chatbot.ingest.service import expand_paths

    urls = [t for t in targets if is_url(t)]
    files = expand_paths([Path(t) for t in targets if not is_url(t)])
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise ConfigError(f"No such file: {missing[0]}")
    tally = Tally()

    async def local(services: Any) -> None:
        from chatbot.ingest.fetch import fetch_pages

        who = tenant or settings.default_tenant
        with tqdm(total=len(files), unit="file", desc="ingest", disable=not files) as bar:
            for path in files:
                try:
                    report = await services.ingestor.ingest_paths(who, [path], metadata=metadata)
                except ChatbotError as exc:
                    tally.fail(str(path), exc)
                else:
                    for result in report.documents:
                        tally.add(result)
                    for item in report.skipped:  # the file's own fault: reported, the others go on
                        tally.skip(item.source, item.code, item.reason)
                bar.set_postfix(chunks=tally.chunks, written=tally.written)
                bar.update(1)
        for url in urls:
            try:
                async for page in fetch_pages(url, settings.fetch):
                    tally.add(await services.ingestor.ingest_bytes(who, page.source, page.data))
            except ChatbotError as exc:
                tally.fail(url, exc)

    async def remote(api: RemoteServer) -> None:
        with tqdm(total=len(files), unit="file", desc="ingest", disable=not files) as bar:
            for path in files:
                try:
                    for result in await api.upload(path.name, path.read_bytes(), metadata):
                        tally.add(result)
                except ConfigError:
                    raise  # the server itself failed (unreachable): not one file's error
                except ChatbotError as exc:
                    tally.fail(str(path), exc)
                bar.update(1)
        for url in urls:
            try:
                job = await api.sync_url(url)
            except ConfigError:
                raise
            except ChatbotError as exc:
                tally.fail(url, exc)
                continue
            for raw in job.get("results", []):
                tally.add(IngestResult(**{k: raw[k] for k in IngestResult.__dataclass_fields__}))
            for err in job.get("errors", []):
                tally.fail(str(err["source"]), ChatbotError(str(err["message"]), code=str(err["code"])))

    await through_store_or_server(settings, server, tenant, local, remote)
    print(tally.line())


async def sync(settings: Settings, folder: Path, tenant: str | None, server: Server) -> None:
    from chatbot.ingest.sync import LocalSink, Sink, manifest_path, sync_folder

    who = tenant or settings.default_tenant
    progress = JobProgress(id="cli", tenant=who, kind="sync")

    async def nothing() -> None:
        return None

    async def run(sink: Sink, key: str) -> None:
        manifest = manifest_path(settings.jobs.state_dir, key, folder)
        await sync_folder(folder, sink, manifest=manifest, progress=progress, notify=nothing)

    async def local(services: Any) -> None:
        await run(LocalSink(services.ingestor, who), who)

    async def remote(api: RemoteServer) -> None:
        await run(api, f"{api.url}|{tenant or ''}")

    await through_store_or_server(settings, server, tenant, local, remote)
    for skipped in progress.skipped:
        print(f"skipped: {skipped['source']}: {skipped['reason']}", file=sys.stderr)
    for err in progress.errors:
        print(f"error: {err['source']}: {err['code']}: {err['message']}", file=sys.stderr)
    print(
        f"{progress.files_total} files: {len(progress.results)} ingested, {progress.unchanged} unchanged, "
        f"{progress.deleted} chunks deleted, {len(progress.errors)} failed, {len(progress.skipped)} skipped"
    )


async def documents(
    settings: Settings, action: str, doc_id: str | None, tenant: str | None, server: Server
) -> None:
    if action == "delete" and not doc_id:
        raise ConfigError("documents delete needs a doc_id")

    async def local(services: Any) -> None:
        if action == "list":
            for d in await services.store.list_documents(tenant or settings.default_tenant):
                print(f"{d.doc_id}  {d.chunks:5d} chunks  {d.source}")
        else:
            deleted = await services.ingestor.delete(tenant or settings.default_tenant, doc_id)
            print(f"deleted {deleted} chunks")

    async def remote(api: RemoteServer) -> None:
        if action == "list":
            for d in await api.documents():
                print(f"{d['doc_id']}  {d['chunks']:5d} chunks  {d['source']}")
        else:
            print(f"deleted {await api.remove(str(doc_id))} chunks")

    await through_store_or_server(settings, server, tenant, local, remote)
