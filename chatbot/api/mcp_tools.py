"""The MCP server's tools (the official `mcp` SDK's MCPServer): search, ask, list_documents, get_passage.

Both transports serve this one server: streamable HTTP at /mcp (api/mcp.py) and stdio (`python -m chatbot
mcp`). A tool finds who calls in its request: over HTTP, the identity the app's hooks established from the
API key (api/mcp.py puts it in the request's ASGI scope, so it is per request, never per session); over
stdio, the one the command was started with. Every tool goes through the same code as the REST routes:
search through the retriever (api/search.py), ask through ChatService (quotas, admission, stop on leave),
passages through the store's tenant-scoped chunks query (api/documents.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from chatbot.api.documents import MAX_CONTEXT, passage_body, read_passage
from chatbot.api.search import MAX_K, search_chunks
from chatbot.chat.caller import Caller
from chatbot.chat.service import Ask
from chatbot.errors import ChatbotError
from chatbot.events import (
    DoneEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    StartEvent,
    StoppedEvent,
    TokenEvent,
)
from chatbot.stores.base import MetadataFilter
from chatbot.wiring import Services

log = logging.getLogger(__name__)
SCOPE_KEY = "chatbot.mcp"
"""The ASGI scope key under which api/mcp.py hands a request's Backend to the tools."""
INSTRUCTIONS = (
    "Search and ask this knowledge base. `search` returns ranked passages (document, page, score); `ask` "
    "answers a question with numbered sources; `get_passage` shows a cited chunk with its neighbours; "
    "`list_documents` lists what is indexed. Filters match document metadata, e.g. "
    '{"tags": {"any": ["hr"]}, "lang": "en", "year": {"gte": 2020}}.'
)


@dataclass(frozen=True, slots=True)
class Backend:
    """What a tool call runs with: the app's services and who calls."""

    services: Services
    caller: Caller


def build_server(default: Backend | None = None) -> MCPServer:
    """The MCP server. `default`: the identity of a stdio server (HTTP requests carry their own)."""
    with _logging_kept():
        server: MCPServer = MCPServer(name="chatbot", instructions=INSTRUCTIONS, log_level="WARNING")

    def backend(ctx: Context) -> Backend:
        request = ctx.request_context.request  # the HTTP request (streamable HTTP), None over stdio
        scope = getattr(request, "scope", None)
        found = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
        if isinstance(found, Backend):
            return found
        if default is not None and request is None:
            return default
        raise ToolError("unauthorized: no identity for this request")  # never reached through api/mcp.py

    @server.tool(
        description="Ranked passages for a query: document, title, page, heading path, text and score.",
        structured_output=True,
    )
    async def search(
        query: str, ctx: Context, k: int = 5, filter: MetadataFilter | None = None
    ) -> dict[str, Any]:
        b = backend(ctx)
        with _public_errors():
            found = await search_chunks(b.services, b.caller.tenant, query, max(1, min(k, MAX_K)), filter)
        return {"results": [s.to_dict() for s in found]}

    @server.tool(
        description="Answer a question from the documents, with numbered sources ([n] in the answer). "
        "Sends progress notifications while the answer streams when the client asks for them.",
        structured_output=True,
    )
    async def ask(
        question: str,
        ctx: Context,
        filter: MetadataFilter | None = None,
        conversation_id: str | None = None,
    ) -> dict[str, Any]:
        b = backend(ctx)
        with _public_errors():
            return await _answer(b, ctx, Ask(question, conversation_id, where=filter))

    @server.tool(
        description="The documents of this knowledge base with their chunk counts.", structured_output=True
    )
    async def list_documents(ctx: Context) -> dict[str, Any]:
        b = backend(ctx)
        with _public_errors():
            docs = await b.services.store.list_documents(b.caller.tenant)
        return {"documents": [d.to_dict() for d in docs]}

    @server.tool(
        description="A cited chunk (a source's doc_id and chunk_index) with `context` chunks on each side.",
        structured_output=True,
    )
    async def get_passage(doc_id: str, chunk_index: int, ctx: Context, context: int = 1) -> dict[str, Any]:
        b = backend(ctx)
        if chunk_index < 0 or not 0 <= context <= MAX_CONTEXT:
            raise ToolError(f"invalid_context: chunk_index >= 0 and context from 0 to {MAX_CONTEXT}")
        with _public_errors():
            chunks = await read_passage(b.services.store, b.caller.tenant, doc_id, chunk_index, context)
        return passage_body(chunks, chunk_index)

    return server


async def _answer(b: Backend, ctx: Context, ask: Ask) -> dict[str, Any]:
    """Start the answer through the chat service and read it to its end; a progress notification per
    streamed token batch. If the call is cancelled (the client left or cancelled), the answer is stopped and
    its upstream stream closed (follow(stop_on_leave=True))."""
    chat = b.services.chat_service
    started = await chat.start(b.caller, ask)
    text: list[str] = []
    sources: tuple[Source, ...] = ()
    finish_reason = "stopped"
    events = await chat.follow(b.caller, started.message_id, stop_on_leave=True)
    async with contextlib.aclosing(events) as stream:
        async for _seq, event in stream:
            if isinstance(event, TokenEvent):
                text.append(event.delta)
                await ctx.report_progress(len(text), message=event.delta)
            elif isinstance(event, SourcesEvent):
                sources = event.sources
            elif isinstance(event, DoneEvent):
                finish_reason = event.finish_reason
            elif isinstance(event, ErrorEvent):
                raise ToolError(f"{event.code}: {event.message}")
            elif isinstance(event, StoppedEvent | StartEvent):
                continue
    return {
        "message_id": started.message_id,
        "conversation_id": started.conversation_id,
        "answer": "".join(text),
        "finish_reason": finish_reason,
        "sources": [s.to_dict() for s in sources],
    }


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """MCPServer() calls logging.basicConfig (a rich handler on the root logger when it has none): logging
    is configured by our CLI (ops/observability.py), so the root logger is put back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _public_errors() -> Iterator[None]:
    """Our errors as tool errors with their stable code and public message (never exception text)."""
    try:
        yield
    except ChatbotError as exc:
        raise ToolError(f"{exc.code}: {exc.message}") from None
