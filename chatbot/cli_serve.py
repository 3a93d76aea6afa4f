"""`python -m chatbot serve`: hypercorn serving the app in this process, the user guide ingested on start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from chatbot.cli_remote import announced
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


async def serve(settings: Settings) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from chatbot.app import create_app, drain
    from chatbot.serving import install_protocol_fixes
    from chatbot.wiring import build_services

    install_protocol_fixes()  # close frames on websocket protocol violations; pings only after quiet
    loop = asyncio.get_running_loop()
    budget = settings.server.shutdown_seconds
    reserve = min(CLOSE_RESERVE_SECONDS, budget / 3)
    exit_by: list[float] = []  # set at the signal: everything after it ends by then
    stack = contextlib.AsyncExitStack()
    try:
        services = await stack.enter_async_context(build_services(settings))
        if settings.server.ingest_on_start:
            await bootstrap_documents(services, settings)
        app = create_app(settings, services=services)
        config = Config()
        config.bind = [f"{settings.server.host}:{settings.server.port}"]
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

        print(
            f"chatbot serving on http://{settings.server.host}:{settings.server.port} "
            f"(websocket ws://{settings.server.host}:{settings.server.port}/v1/ws); "
            f"embedder={services.embedder.name} chat={services.chat.name}; "
            + (
                f"{len(settings.auth.api_keys)} API keys"
                if settings.auth.api_keys
                else "OPEN ACCESS: no API keys configured (anyone who can reach this port may chat and ingest)"
            ),
            flush=True,
        )
        with announced(settings):  # `ingest` and friends find this server while it holds the store
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
