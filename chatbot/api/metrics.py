"""GET /metrics: this process's Prometheus series (text exposition). Scrape each replica, not the balancer."""

from __future__ import annotations

from quart import Blueprint, Response

from chatbot.api.context import services
from chatbot.api.routes import route

bp = Blueprint("metrics", __name__)


@route(
    bp,
    "GET",
    "/metrics",
    role="admin",
    response="text/plain",
    summary="Prometheus metrics of this process (text exposition format).",
)
async def metrics() -> Response:
    """Render inline: generate_latest walks a few dozen in-memory series, no I/O."""
    body, content_type = services().metrics.render()
    return Response(body, status=200, content_type=content_type)
