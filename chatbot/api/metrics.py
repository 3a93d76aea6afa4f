"""GET /metrics: this process's Prometheus series (text exposition). Scrape each replica, not the balancer."""

from __future__ import annotations

from quart import Blueprint, Response

from chatbot.api.context import services

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
async def metrics() -> Response:
    """Render inline: generate_latest walks a few dozen in-memory series, no I/O."""
    body, content_type = services().metrics.render()
    return Response(body, status=200, content_type=content_type)
