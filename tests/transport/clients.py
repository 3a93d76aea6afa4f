"""Small protocol clients for tests: websocket frames and SSE events."""

from __future__ import annotations

import json
from typing import Any

import httpx

END_TYPES = {"done", "stopped", "error"}


def ws_url(base_url: str, path: str = "/v1/ws") -> str:
    return base_url.replace("http://", "ws://", 1) + path


async def collect_until_end(ws: Any, *, also_errors: bool = False) -> list[dict[str, Any]]:
    """Frames until an answer's terminal frame (errors without a message_id are connection-level)."""
    frames: list[dict[str, Any]] = []
    while True:
        frame = json.loads(await ws.recv())
        frames.append(frame)
        if frame["type"] in END_TYPES and (
            frame["type"] != "error" or "message_id" in frame or not also_errors
        ):
            return frames


async def ask_ws(ws: Any, message: str, **extra: Any) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "ask", "message": message, **extra}))
    return await collect_until_end(ws)


def parse_sse(text: str) -> list[dict[str, Any]]:
    """SSE text -> [{'id':..., 'event':..., 'data': parsed JSON}] (comments skipped)."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        data_lines = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data_lines.append(value)
            else:
                fields[name] = value
        if data_lines:
            fields["data"] = json.loads("\n".join(data_lines))
            events.append(fields)
    return events


async def sse_events(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    async with client.stream(method, url, **kwargs) as response:
        body = (await response.aread()).decode()
    return response, parse_sse(body)
