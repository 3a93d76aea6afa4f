"""Operational read-outs: the serving loop's lag as measured inside the server (the benchmark reads it)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from chatbot.api.context import services

bp = Blueprint("debug", __name__)


@bp.get("/debug/looplag")
async def looplag() -> Any:
    """p50/p99/max event-loop lag over the recent window, in milliseconds."""
    return services().looplag.snapshot()


@bp.post("/debug/looplag/reset")
async def looplag_reset() -> Any:
    """Forget the samples so far (e.g. after a warm-up); returns the emptied snapshot."""
    monitor = services().looplag
    monitor.reset()
    return monitor.snapshot()
