"""`python -m chatbot serve [--workers N]`: hypercorn serving the app, the user guide ingested on start.

One worker (the default) serves in this process. With N > 1 this process is a supervisor in the manner of
hypercorn's own multi-process mode (hypercorn.run with Config.workers): it binds the listening socket once and
spawns N worker processes that accept on it, each running the same serve() as a single process does (its own
services, its own SIGTERM drain). Unlike hypercorn.run, which terminates the other workers as soon as the first
one exits, the supervisor forwards SIGTERM to every worker and waits for each to finish its drain.

Workers share nothing in memory, so N > 1 needs every piece of state shared (check_shareable refuses the rest
with one line): conversations, event logs, stop signals, quotas, feedback and jobs on Redis, vectors on a
Qdrant server. The embedded store is locked to one process; with server.embedded_replicas each worker serves a
read-only copy of it taken at start, while this process holds the original's lock (no writer can change it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chatbot.cli_remote import announced
from chatbot.errors import ChatbotError, ConfigError
from chatbot.settings import Settings

log = logging.getLogger("chatbot")
DEFAULT_DOCS = Path(__file__).resolve().parents[1] / "docs" / "guide"


def run(coro: Any, settings: Settings) -> None:
    if settings.server.uvloop:
        try:
            import uvloop

            uvloop.run(coro)
            return
        except ImportError:
            pass
    asyncio.run(coro)


# Of server.shutdown_seconds, this much (or a third, if less) is kept for what follows the answers' drain:
# hypercorn's graceful close of the connections, then closing the stores and clients.
CLOSE_RESERVE_SECONDS = 1.5


def serve_command(settings: Settings, host: str | None, port: int | None, workers: int | None) -> int:
    """`serve`: the command line's --host, --port and --workers over the settings; the exit code."""
    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["workers"] = workers
    if overrides:
        try:
            settings.server = settings.server.model_validate(settings.server.model_dump() | overrides)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ConfigError(f"--{first['loc'][0]}: {first['msg']}") from None
    if settings.server.workers == 1:
        run(serve(settings), settings)
        return 0
    return serve_workers(settings)


async def serve(
    settings: Settings, *, listen: socket.socket | None = None, worker: Worker | None = None
) -> None:
    """Serve until SIGTERM/SIGINT, then drain within server.shutdown_seconds. A worker of serve_workers
    accepts on the supervisor's `listen` socket and serves its replica of the embedded store, if any."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from chatbot.app import create_app, drain
    from chatbot.ops.heap import freeze_startup_heap
    from chatbot.serving import install_protocol_fixes
    from chatbot.stores.base import VectorStore
    from chatbot.wiring import build_services

    # close frames on websocket protocol violations; pings only after quiet; deflate only when configured
    install_protocol_fixes(compression=settings.server.websocket_compression)
    loop = asyncio.get_running_loop()
    budget = settings.server.shutdown_seconds
    reserve = min(CLOSE_RESERVE_SECONDS, budget / 3)
    exit_by: list[float] = []  # set at the signal: everything after it ends by then
    stack = contextlib.AsyncExitStack()
    try:
        store: VectorStore | None = None
        if worker is not None and worker.replica is not None:
            store = await open_replica(settings, worker.replica)
            stack.push_async_callback(store.aclose)
        services = await stack.enter_async_context(build_services(settings, store=store))
        first = worker is None or worker.index == 0
        if settings.server.ingest_on_start and first and store is None:  # one worker ingests the guide
            await bootstrap_documents(services, settings)
        app = create_app(settings, services=services)
        freeze_startup_heap()  # keeps the collector's full passes off the start-up heap (ops/heap.py)
        config = Config()
        config.bind = [
            f"fd://{listen.fileno()}" if listen else f"{settings.server.host}:{settings.server.port}"
        ]
        config.websocket_ping_interval = settings.stream.heartbeat_seconds
        # hypercorn buffers a whole message before the app sees it (default 16 MiB): bound that buffer too;
        # frames up to it get our payload_too_large error frame, larger ones a close with 1009
        config.websocket_max_message_size = max(1 << 20, 4 * settings.limits.max_frame_bytes)
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")  # through the root handler: JSON in prod, once
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def shutdown_trigger() -> None:
            """One budget for the whole exit: answers drain, websockets close, then hypercorn closes the
            connections in what is left (graceful_timeout is read after this returns) less the stores' share."""
            await stop.wait()
            exit_by.append(loop.time() + budget)
            log.info("shutting down: draining running answers (up to %ss)", budget)
            await drain(app, budget - reserve)
            config.graceful_timeout = max(0.05, exit_by[0] - loop.time() - reserve / 2)

        if first:
            print(
                f"chatbot serving on http://{settings.server.host}:{settings.server.port} "
                f"(websocket ws://{settings.server.host}:{settings.server.port}/v1/ws); "
                f"embedder={services.embedder.name} chat={services.chat.name}; "
                + (
                    f"{len(settings.auth.api_keys)} API keys"
                    if settings.auth.api_keys
                    else "OPEN ACCESS: no API keys configured (anyone who can reach this port may chat and ingest)"
                )
                + (f"; {settings.server.workers} worker processes" if worker else ""),
                flush=True,
            )
        # `ingest` and friends find this server while it holds the store (a worker's supervisor announces)
        with announced(settings) if worker is None else contextlib.nullcontext():
            await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger)
    finally:
        left = exit_by[0] - loop.time() if exit_by else budget
        try:  # stores and clients close in what is left of the budget; past it the process exits anyway
            await asyncio.wait_for(stack.aclose(), max(0.05, left))
        except TimeoutError:
            log.warning("shutdown: closing stores and clients did not finish within the shutdown budget")


async def bootstrap_documents(services: Any, settings: Settings) -> None:
    """Ingest the bundled user guide when the default tenant has no documents yet."""
    docs_dir = settings.docs_dir or DEFAULT_DOCS
    if not docs_dir.is_dir() or await services.store.count(settings.default_tenant) > 0:
        return
    log.info("collection is empty: ingesting %s", docs_dir)
    report = await services.ingestor.ingest_paths(settings.default_tenant, [docs_dir], root=docs_dir)
    log.info(
        "ingested %d documents, %d chunks", len(report.documents), sum(r.chunks for r in report.documents)
    )
    for skipped in report.skipped:
        log.warning("skipped %s: %s (%s)", skipped.source, skipped.reason, skipped.code)


# -- several worker processes ---------------------------------------------------------------------------


class Worker:
    """What a worker process is told: its index, and the folder of its read-only store copy (or None)."""

    def __init__(self, index: int, replica: Path | None) -> None:
        self.index = index
        self.replica = replica


def check_shareable(settings: Settings) -> None:
    """Refuse (one line) a multi-worker configuration with state that would be per process."""
    missing = []
    if not settings.redis.url:
        missing.append("CHATBOT_REDIS__URL (conversations, event logs, stop signals and quotas)")
    if settings.jobs.backend != "redis":
        missing.append("CHATBOT_JOBS__BACKEND=redis (ingestion jobs)")
    qdrant = settings.qdrant
    if qdrant.is_local and (qdrant.location == ":memory:" or not settings.server.embedded_replicas):
        missing.append(
            "CHATBOT_QDRANT__URL (the embedded store is locked to one process"
            + (
                "; an in-memory one is per process)"
                if qdrant.location == ":memory:"
                else ", or CHATBOT_SERVER__EMBEDDED_REPLICAS=true for read-only copies)"
            )
        )
    elif qdrant.is_local and settings.cache.enabled:
        missing.append("CHATBOT_CACHE__ENABLED=false (the answer cache writes to the read-only copies)")
    if missing:
        raise ConfigError(
            f"serve --workers {settings.server.workers} needs state shared by every worker: "
            + "; ".join(missing)
        )


async def open_replica(settings: Settings, folder: Path) -> Any:
    """The worker's copy of the embedded store, opened, refusing writes."""
    from chatbot.stores.factory import vector_store
    from chatbot.stores.read_only import ReadOnlyStore

    store = ReadOnlyStore(vector_store(settings.qdrant.model_copy(update={"path": str(folder)})))
    await store.open()
    return store


def serve_workers(settings: Settings) -> int:
    """Bind once, spawn server.workers processes accepting on the socket, forward SIGTERM/SIGINT to each and
    wait for all of them; a worker that exits on its own stops the others. The exit code: 0 when all were 0."""
    from hypercorn.config import Config

    from chatbot.stores.qdrant.store import QdrantStore

    check_shareable(settings)
    config = Config()
    config.bind = [f"{settings.server.host}:{settings.server.port}"]
    listen = config.create_sockets().insecure_sockets[0]
    original: QdrantStore | None = None
    copies: Path | None = None
    try:
        replicas: list[Path | None] = [None] * settings.server.workers
        if settings.qdrant.is_local:  # hold the original's lock while the copies serve, then copy it
            original = QdrantStore(settings.qdrant)
            asyncio.run(original.open())
            copies = Path(tempfile.mkdtemp(prefix="chatbot-replicas-"))
            for i in range(settings.server.workers):
                replicas[i] = copies / str(i)
                shutil.copytree(
                    settings.qdrant.location, copies / str(i), ignore=shutil.ignore_patterns(".lock")
                )
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or loops inherited
        processes = [
            context.Process(
                target=worker_main,
                args=(settings, listen, Worker(i, replicas[i])),
                name=f"chatbot-worker-{i}",
            )
            for i in range(settings.server.workers)
        ]
        with announced(settings):
            return supervise(processes)
    finally:
        listen.close()
        if original is not None:
            asyncio.run(original.aclose())
        if copies is not None:
            shutil.rmtree(copies, ignore_errors=True)


def supervise(processes: Sequence[BaseProcess]) -> int:
    """Start the processes; on SIGTERM/SIGINT (or one exiting by itself) send SIGTERM to the rest; wait."""
    stopping = False

    def stop_all(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                process.terminate()  # SIGTERM: the worker drains like a single process does

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        code, running = 0, list(processes)
        while running:
            wait([process.sentinel for process in running])
            for process in [p for p in running if p.exitcode is not None]:
                running.remove(process)
                exitcode = process.exitcode or 0
                code = code or (exitcode if exitcode > 0 else 1 if exitcode else 0)
                if not stopping:
                    log.error("%s exited (code %s): stopping the other workers", process.name, exitcode)
                    stop_all()
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker_main(settings: Settings, listen: socket.socket, worker: Worker) -> None:
    """A worker process: the supervisor's settings, its listening socket, one serve() until SIGTERM."""
    from chatbot.ops.observability import configure_logging, wants_json_logs
    from chatbot.ops.redaction import known_secrets

    configure_logging(settings.log_level, json=wants_json_logs(settings), secrets=known_secrets(settings))
    try:
        run(serve(settings, listen=listen, worker=worker), settings)
    except ChatbotError as exc:
        print(f"error: worker {worker.index}: {exc.message}", file=sys.stderr)
        sys.exit(2)
