"""MCP over streamable HTTP at /mcp, in the same app and hypercorn process as every other route.

/mcp is declared like every route (role `chat`), so the app's hooks run first: Host check, request id, API
key -> tenant and roles (a key without the chat role gets 403 before the MCP server sees anything, as MCP's
authorization spec answers insufficient rights), the per-caller rate limit. The view then hands the request
to the official SDK's StreamableHTTPSessionManager as an ASGI call: the body it already read, and the
caller's Backend in the ASGI scope (mcp_tools.SCOPE_KEY), where each tool reads its identity.

The manager is stateless (a fresh MCP transport per POST): identity is per request, any instance can serve
any request behind a load balancer, and a client that leaves mid-call ends that call's server, which
cancels the tool (an `ask` then stops its answer and closes the model's stream). The SDK's own DNS-rebinding
check is off: the app's Host check (server.allowed_hosts) already guards every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, MutableMapping
from typing import Annotated, Any, Literal

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Quart, Response, request
from werkzeug.datastructures import Headers

from chatbot.api.context import caller, services
from chatbot.api.http import json_body
from chatbot.api.mcp_tools import SCOPE_KEY, Backend, build_server
from chatbot.api.routes import EventStream, route
from chatbot.api.wire import dumps, validate
from chatbot.errors import ChatbotError, UnsupportedMediaType

bp = Blueprint("mcp", __name__)
log = logging.getLogger(__name__)
MANAGER = "chatbot.mcp_manager"  # app.extensions key of the running session manager
PATH = "/mcp"
_SUMMARY = (
    "MCP (Model Context Protocol) over streamable HTTP: tools search, ask, list_documents, get_passage."
)


def install(app: Quart) -> None:
    """Run the SDK's session manager while the app serves (its task group holds the MCP servers)."""

    @app.while_serving
    async def mcp_manager() -> AsyncGenerator[None, None]:
        server = build_server()
        server.streamable_http_app(  # builds the session manager; the Starlette app itself is not used
            streamable_http_path=PATH,
            stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = server.session_manager
        async with manager.run():
            app.extensions[MANAGER] = manager
            try:
                yield
            finally:
                app.extensions.pop(MANAGER, None)
        await _stop_sse_watcher()


async def _stop_sse_watcher() -> None:
    """The SDK streams with sse-starlette, whose first response starts a task on the loop that polls every
    0.5 s for uvicorn's shutdown flag, forever. We serve with hypercorn (nothing for it to see), so it stops
    with the app instead of outliving it (it restarts with the next SSE response)."""
    watchers = [
        t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "_shutdown_watcher"
    ]
    for task in watchers:
        task.cancel()
    if watchers:
        await asyncio.wait(watchers, timeout=1)


class JsonRpcMessage(BaseModel):
    """One JSON-RPC 2.0 request or notification (no id) of the MCP protocol, e.g. tools/call."""

    model_config = ConfigDict(extra="forbid")

    jsonrpc: Literal["2.0"]
    id: int | Annotated[str, Field(max_length=128)] | None = None
    method: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] | None = None


@route(
    bp,
    "POST",
    PATH,
    role="chat",
    body=JsonRpcMessage,
    stream=EventStream("One JSON-RPC message: progress notifications, then the result.", ("message",)),
    other={202: None},
    errors=(413, 415, 422),
    summary=_SUMMARY,
)
async def mcp_post() -> Any:
    """One JSON-RPC message; the answer is an SSE stream (progress notifications, then the result), or 202
    for a notification. GET and DELETE answer 405: the server is stateless, so there is no session stream
    to open or session to end."""
    return await _bridge()


async def _bridge() -> Response:
    """This request as one ASGI call of the session manager; its answer streamed back as Quart's."""
    from quart import current_app

    manager: StreamableHTTPSessionManager | None = current_app.extensions.get(MANAGER)
    if manager is None:
        raise ChatbotError("The MCP server is not running.", code="unavailable")
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send MCP messages as application/json.")
    message = await json_body()  # within limits.max_frame_bytes, refused in our error shape
    validate(JsonRpcMessage, message)
    body = dumps(message).encode()
    scope = {
        **request.scope,
        # the SDK refuses a POST that does not accept both; our answer is SSE whatever the client said
        "headers": [
            *((k, v) for k, v in request.scope["headers"] if k.lower() not in (b"accept", b"content-length")),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-length", str(len(body)).encode()),
        ],
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        SCOPE_KEY: Backend(services(), caller()),
    }
    call = _AsgiCall(body)
    call.task = asyncio.create_task(manager.handle_request(scope, call.receive, call.send))
    status, headers = await call.started()
    return Response(call.stream_body(), status=status, headers=headers)


class _AsgiCall:
    """One ASGI request/response exchange driven from a Quart view."""

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body
        self.left = asyncio.Event()  # the client left (our response body was closed early)
        self.messages: asyncio.Queue[MutableMapping[str, Any] | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> dict[str, Any]:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        await self.messages.put(message)

    async def started(self) -> tuple[int, Headers]:
        assert self.task is not None  # noqa: S101 - set by _bridge before it waits
        self.task.add_done_callback(lambda _t: self.messages.put_nowait(None))
        message = await self.messages.get()
        if message is None or message["type"] != "http.response.start":
            self.task.result()  # re-raise what ended the call
            raise ChatbotError("The MCP server did not answer.")
        headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])])
        return int(message["status"]), headers

    async def stream_body(self) -> AsyncIterator[bytes]:
        """The response body as the manager sends it; closing it early (the client left) ends the call."""
        try:
            while True:
                message = await self.messages.get()
                if message is None:
                    return
                if message["type"] == "http.response.body":
                    if chunk := message.get("body", b""):
                        yield chunk
                    if not message.get("more_body", False):
                        return
        finally:
            self.left.set()
            if self.task is not None and not self.task.done():
                self.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task
