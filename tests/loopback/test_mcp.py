"""The MCP server, driven by the official SDK's own client over both transports: streamable HTTP at /mcp on
the served app (hypercorn) and stdio (`python -m chatbot mcp` as a subprocess). Identity, roles and tenant
isolation as on every route; a client that leaves mid-ask stops the answer and closes its upstream stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from chatbot.api.auth import new_api_key
from chatbot.app import create_app
from chatbot.ingest.service import Ingestor
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.fakes.scripting import Latency, Reply
from tests.lifecycle.conftest import StackFactory, llm_stack  # noqa: F401 - the fixture, shared
from tests.serving import serve_app

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How do I stop an answer?"


@contextlib.asynccontextmanager
async def http_client(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """The SDK's Client over streamable HTTP to `url`/mcp with these request headers."""
    async with (
        httpx2.AsyncClient(headers=headers or {}, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        yield client


def tenant_headers(name: str) -> dict[str, str]:
    return {"X-Chatbot-Tenant": name}


async def upload(svc: Services, tenant: str, name: str, text: str, meta: dict[str, Any] | None = None) -> str:
    result = await svc.ingestor.ingest_bytes(tenant, name, text.encode(), metadata=meta)
    return result.doc_id


class TestStreamableHttp:
    async def test_tools_are_listed(self, served: str) -> None:
        """The four tools are listed with input schemas (the filter is described)."""
        async with http_client(served) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"search", "ask", "list_documents", "get_passage"}
        assert "filter" in tools["search"].input_schema["properties"]

    async def test_search_then_passage(self, served: str) -> None:
        """search returns ranked chunks with document, score and chunk index; get_passage shows one in context."""
        async with http_client(served) as client:
            found = await client.call_tool("search", {"query": QUESTION, "k": 3})
            assert not found.is_error, found.content
            results = (found.structured_content or {})["results"]
            assert len(results) == 3
            assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
            top = results[0]
            passage = await client.call_tool(
                "get_passage", {"doc_id": top["doc_id"], "chunk_index": top["chunk_index"], "context": 1}
            )
        body = passage.structured_content or {}
        assert body["chunk_index"] == top["chunk_index"]
        assert top["text"] in [c["text"] for c in body["chunks"]]

    async def test_ask_answers_with_sources_and_progress(self, served: str) -> None:
        """ask answers through the chat service, cites sources and sends progress while it streams."""
        progress: list[str | None] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        async with http_client(served) as client:
            result = await client.call_tool("ask", {"question": QUESTION}, progress_callback=on_progress)
        body = result.structured_content or {}
        assert not result.is_error, result.content
        assert body["finish_reason"] == "stop"
        assert body["sources"]
        assert body["answer"]
        assert progress
        assert "".join(m or "" for m in progress) == body["answer"]

    async def test_errors_are_tool_errors_with_public_codes(self, served: str) -> None:
        """An empty question, an unknown passage and a bad filter are tool errors, never exception text."""
        async with http_client(served) as client:
            empty = await client.call_tool("ask", {"question": "   "})
            missing = await client.call_tool("get_passage", {"doc_id": "nope", "chunk_index": 0})
            bad = await client.call_tool("search", {"query": "x", "filter": {"a": {"regex": ".*"}}})
        assert empty.is_error
        assert "empty_message" in str(empty.content)
        assert missing.is_error
        assert "unknown_document" in str(missing.content)
        assert bad.is_error
        assert "Traceback" not in str(bad.content)

    async def test_two_tenants_never_see_each_other(self, served: str, services: Services) -> None:
        """Each tenant's tools see only its own documents (search, filter naming tenant, list, passage, ask)."""
        suffix = uuid.uuid4().hex[:8]
        a, b = f"t-mcp-a-{suffix}", f"t-mcp-b-{suffix}"
        doc_a = await upload(services, a, "vault.md", f"# Vault\n\nThe vault code is ALPHA-{suffix}.\n")
        await upload(services, b, "vault.md", f"# Vault\n\nThe vault code is BRAVO-{suffix}.\n")
        async with http_client(served, tenant_headers(b)) as client:
            found = await client.call_tool("search", {"query": "vault code", "k": 5})
            tricked = await client.call_tool("search", {"query": "vault code", "filter": {"tenant": a}})
            docs = await client.call_tool("list_documents", {})
            theirs = await client.call_tool("get_passage", {"doc_id": doc_a, "chunk_index": 0})
            answer = await client.call_tool("ask", {"question": f"Is the vault code ALPHA-{suffix}?"})
        assert f"BRAVO-{suffix}" in str(found.structured_content)
        assert f"ALPHA-{suffix}" not in str(found.structured_content)
        assert (tricked.structured_content or {})["results"] == []
        assert [d["source"] for d in (docs.structured_content or {})["documents"]] == ["vault.md"]
        assert theirs.is_error
        assert f"ALPHA-{suffix}" not in str((answer.structured_content or {})["sources"])


class TestHostileRequests:
    @pytest.mark.parametrize(
        ("content_type", "body", "status", "code"),
        [
            ("text/plain", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}', 415, "unsupported_media_type"),
            ("application/json", b"{nope", 400, "invalid_json"),
            ("application/json", b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', 422, "validation_error"),
            ("application/json", b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', 422, "validation_error"),
            ("application/json", b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "x"}', 422, "validation_error"),
            ("application/json", b'{"jsonrpc": "2.0", "id": 1, "method": "' + b"x" * 70_000 + b'"}', 413,
             "payload_too_large"),
        ],
    )  # fmt: skip
    async def test_refused_in_our_error_shape_before_the_sdk(
        self, served: str, content_type: str, body: bytes, status: int, code: str
    ) -> None:
        """Wrong media type, broken JSON, batches, other JSON-RPC versions, odd ids and huge bodies are refused
        by the route (our error body, as documented), never by a traceback."""
        async with httpx2.AsyncClient() as http:
            r = await http.post(f"{served}/mcp", content=body, headers={"Content-Type": content_type})
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code

    async def test_get_and_delete_are_405(self, served: str) -> None:
        """The server is stateless: no session stream to open (GET) or session to end (DELETE)."""
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"{served}/mcp")).status_code == 405
            assert (await http.delete(f"{served}/mcp")).status_code == 405


class TestKeys:
    @pytest.fixture
    async def keyed(
        self, offline_providers: Providers, guide_store: VectorStore
    ) -> AsyncIterator[tuple[str, dict[str, str], Services]]:
        """The app with API keys: a chat key of tenant acme, an ingest-only key, and one of tenant globex."""
        keys, specs = {}, []
        for name, tenant, roles in (("chat", "acme", ["chat"]), ("ingest", "acme", ["ingest"]),
                                    ("globex", "globex", ["chat"])):  # fmt: skip
            key, sha256 = new_api_key()
            keys[name] = key
            specs.append({"id": name, "sha256": sha256, "tenant": tenant, "roles": roles})
        settings = make_settings(auth={"api_keys": specs})
        async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
            async with serve_app(create_app(settings, services=svc)) as url:
                yield url, keys, svc

    async def test_the_key_decides_the_tenant(self, keyed: tuple[str, dict[str, str], Services]) -> None:
        """A chat key's tools search its tenant's documents; a tenant header cannot change that."""
        url, keys, svc = keyed
        marker = uuid.uuid4().hex[:8]
        await upload(svc, "acme", f"acme-{marker}.md", f"# Acme\n\nAcme's launch code is LAUNCH-{marker}.\n")
        headers = {"Authorization": f"Bearer {keys['globex']}", "X-Chatbot-Tenant": "acme"}
        async with http_client(url, headers) as client:
            found = await client.call_tool("search", {"query": "launch code", "k": 5})
        assert f"LAUNCH-{marker}" not in str(found.structured_content)
        async with http_client(url, {"Authorization": f"Bearer {keys['chat']}"}) as client:
            found = await client.call_tool("search", {"query": "launch code", "k": 5})
        assert f"LAUNCH-{marker}" in str(found.structured_content)

    @pytest.mark.parametrize(("key", "status"), [(None, 401), ("nope", 401), ("ingest", 403)])
    async def test_without_the_chat_role_the_client_is_refused(
        self, keyed: tuple[str, dict[str, str], Services], key: str | None, status: int
    ) -> None:
        """No key or a wrong one is 401, a key without the chat role 403 (MCP's HTTP authorization errors):
        the SDK client fails to connect and no tool runs."""
        url, keys, _ = keyed
        headers = {"Authorization": f"Bearer {keys.get(key or '', key)}"} if key else {}
        async with httpx2.AsyncClient(headers=headers) as http:
            r = await http.post(
                f"{url}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Accept": "application/json, text/event-stream"},
            )
        assert r.status_code == status
        with pytest.raises(ExceptionGroup) as refused:
            async with http_client(url, headers) as client:
                await client.list_tools()
        assert refused.group_contains(MCPError)  # any depth: the SDK nests its task groups


class TestDisconnect:
    async def test_a_client_that_leaves_mid_ask_closes_the_upstream_stream(
        self,
        llm_stack: StackFactory,  # noqa: F811 - the imported fixture
    ) -> None:
        """Cancelling the SDK client while ask streams ends the HTTP request: the answer is stopped and the
        model's stream (the fake upstream's) is closed by us, long before the reply would have ended."""
        async with llm_stack(reply=Reply(tokens=400), latency=Latency(token_ms=20)) as stack:
            first = asyncio.Event()

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                first.set()

            async def ask() -> None:
                async with http_client(stack.url) as client:
                    await client.call_tool("ask", {"question": QUESTION}, progress_callback=on_progress)

            task = asyncio.create_task(ask())
            await asyncio.wait_for(first.wait(), 10)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            record = await stack.fake.wait_stream_closed(within=5)
            assert record.client_closed_at is not None
            assert not record.completed
            for _ in range(200):
                if not stack.services.answers.running:
                    break
                await asyncio.sleep(0.01)
            assert stack.services.answers.running == 0


class TestStdio:
    @pytest.fixture
    async def store_dir(self, tmp_path: Path, offline_providers: Providers) -> Path:
        """An on-disk store holding one document of tenant `desk` (the subprocess opens it after us)."""
        settings = make_settings(qdrant={"path": str(tmp_path / "qdrant"), "collection": "mcp"})
        async with build_services(settings, providers=offline_providers) as svc:
            assert isinstance(svc.ingestor, Ingestor)
            await svc.ingestor.ingest_bytes(
                "desk", "desk.md", b"# Desk\n\nThe desk lamp switch is under the left drawer.\n"
            )
        return tmp_path / "qdrant"

    async def test_search_and_ask_over_stdio(self, store_dir: Path) -> None:
        """`python -m chatbot mcp --tenant desk` serves the same tools to the SDK's stdio client."""
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CHATBOT_QDRANT__PATH": str(store_dir),
            "CHATBOT_QDRANT__COLLECTION": "mcp",
            "CHATBOT_EMBEDDING_PROVIDER": "local",
            "CHATBOT_CHAT_PROVIDER": "extractive",
            "CHATBOT_LOCAL__THREADS": "1",
        }
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "chatbot", "mcp", "--tenant", "desk"], env=env, cwd=str(ROOT)
        )
        async with Client(params, read_timeout_seconds=60) as client:
            found = await client.call_tool("search", {"query": "desk lamp switch", "k": 1})
            answer = await client.call_tool("ask", {"question": "Where is the desk lamp switch?"})
            docs = await client.call_tool("list_documents", {})
        assert "left drawer" in str(found.structured_content)
        assert "drawer" in (answer.structured_content or {})["answer"]
        assert [d["source"] for d in (docs.structured_content or {})["documents"]] == ["desk.md"]
