"""Operational read-outs: the serving loop's lag as measured inside the server (the benchmark reads it)."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint

from chatbot.api.context import services
from chatbot.api.responses import LoopLag
from chatbot.api.routes import route

bp = Blueprint("debug", __name__)


@route(
    bp, "GET", "/debug/looplag", role="admin", response=LoopLag, summary="Event-loop lag of the serving loop."
)
async def looplag() -> Any:
    """p50/p99/max event-loop lag over the recent window, in milliseconds; `tasks`: the loop's live asyncio
    tasks (the soak test checks it returns to its baseline once load stops)."""
    return {**services().looplag.snapshot(), "tasks": len(asyncio.all_tasks())}


@route(
    bp,
    "POST",
    "/debug/looplag/reset",
    role="admin",
    response=LoopLag,
    summary="Forget the lag samples so far (e.g. after a warm-up).",
)
async def looplag_reset() -> Any:
    """Forget the samples so far (e.g. after a warm-up); returns the emptied snapshot."""
    monitor = services().looplag
    monitor.reset()
    return monitor.snapshot()
