"""Metadata on upload, POST /v1/search, and the metadata filter on every chat API (native REST and websocket,
the OpenAI-compatible extension field, the AI SDK body), on the real app over hypercorn."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from openai import AsyncOpenAI

from chatbot.api.openai_requests import MODEL_ID
from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.serving import serve_app
from tests.transport.clients import ask_ws, ws_url

QUESTION = "What does the leave policy say about parental leave weeks?"
DOCS = {
    "hr-policy.md": (
        {"tags": ["hr", "policy"], "lang": "en", "year": 2024},
        "# Leave policy\n\nParental leave lasts sixteen weeks at full pay under the HR leave policy.\n",
    ),
    "legal-policy.md": (
        {"tags": ["legal"], "lang": "en", "year": 2018},
        "# Leave policy (legal)\n\nThe statutory parental leave is fourteen weeks under the legal leave policy.\n",
    ),
}
ONLY_HR = {"tags": {"any": ["hr"]}}


@pytest.fixture
async def tenant(served: str) -> dict[str, str]:
    """A fresh tenant with two documents uploaded with different metadata; returns its headers."""
    headers = {"X-Chatbot-Tenant": f"t-meta-{uuid.uuid4().hex[:8]}"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as client:
        for name, (meta, text) in DOCS.items():
            r = await client.post(
                "/v1/documents", files={"file": (name, text.encode())}, data={"metadata": json.dumps(meta)}
            )
            assert r.status_code == 201, r.text
    return headers


def sources_in(payload: Any) -> set[str]:
    text = json.dumps(payload)
    return {name for name in DOCS if name in text}


class TestSearch:
    async def test_ranked_chunks_with_scores(self, served: str, tenant: dict[str, str]) -> None:
        """Without a filter both documents are found, best first, with scores and metadata-free source fields."""
        async with httpx.AsyncClient(base_url=served, headers=tenant) as client:
            r = await client.post("/v1/search", json={"query": QUESTION, "k": 5})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert {x["source"] for x in results} == set(DOCS)
        scores = [x["score"] for x in results]
        assert scores == sorted(scores, reverse=True)
        assert [x["n"] for x in results] == list(range(1, len(results) + 1))

    @pytest.mark.parametrize(
        ("flt", "expected"),
        [
            (ONLY_HR, {"hr-policy.md"}),
            ({"year": {"lt": 2020}}, {"legal-policy.md"}),
            ({"lang": "en", "tags": "policy"}, {"hr-policy.md"}),
            ({"lang": "de"}, set()),
        ],
    )
    async def test_the_filter_selects_documents(
        self, served: str, tenant: dict[str, str], flt: dict[str, Any], expected: set[str]
    ) -> None:
        """A filter keeps only the documents whose metadata matches."""
        async with httpx.AsyncClient(base_url=served, headers=tenant) as client:
            r = await client.post("/v1/search", json={"query": QUESTION, "filter": flt})
        assert r.status_code == 200, r.text
        assert {x["source"] for x in r.json()["results"]} == expected

    async def test_k_bounds_the_results(self, served: str, tenant: dict[str, str]) -> None:
        """k=1 returns one chunk."""
        async with httpx.AsyncClient(base_url=served, headers=tenant) as client:
            r = await client.post("/v1/search", json={"query": QUESTION, "k": 1})
        assert len(r.json()["results"]) == 1

    @pytest.mark.parametrize(
        "body",
        [
            {"query": QUESTION, "filter": {"tags": {"regex": ".*"}}},
            {"query": QUESTION, "filter": {}},
            {"query": QUESTION, "filter": {"a": {"b": {"c": 1}}}},
            {"query": QUESTION, "k": 0},
            {"query": QUESTION, "k": 10_000},
            {"query": ""},
            {"query": QUESTION, "tenant": "public"},
        ],
    )
    async def test_hostile_bodies_are_422(
        self, served: str, tenant: dict[str, str], body: dict[str, Any]
    ) -> None:
        """Unknown operators, empty or nested filters, k out of range, an empty query or extra fields: 422."""
        async with httpx.AsyncClient(base_url=served, headers=tenant) as client:
            r = await client.post("/v1/search", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"

    async def test_a_filter_naming_tenant_stays_in_the_callers_tenant(
        self, served: str, tenant: dict[str, str]
    ) -> None:
        """{"tenant": "public"} reads metadata, not the tenant: the guide of tenant public is never returned."""
        async with httpx.AsyncClient(base_url=served, headers=tenant) as client:
            r = await client.post(
                "/v1/search", json={"query": "How do I stop an answer?", "filter": {"tenant": "public"}}
            )
        assert r.status_code == 200
        assert r.json()["results"] == []


class TestUploadMetadata:
    @pytest.mark.parametrize(
        ("meta", "status"),
        [
            ("not json", 400),
            ('["a"]', 422),
            ('{"a": {"b": 1}}', 422),
            ('{"bad key": 1}', 422),
            ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", 413),
            (json.dumps({"a": "x" * 9000}), 413),
            (json.dumps({f"k{i}": i for i in range(40)}), 422),
        ],
    )
    async def test_hostile_metadata_is_refused_and_nothing_is_stored(
        self, served: str, meta: str, status: int
    ) -> None:
        """Malformed, nested, oversize or too-wide metadata is refused before anything is ingested."""
        headers = {"X-Chatbot-Tenant": f"t-bad-{uuid.uuid4().hex[:8]}"}
        async with httpx.AsyncClient(base_url=served, headers=headers) as client:
            r = await client.post(
                "/v1/documents", files={"file": ("a.md", b"# A\n\nText.")}, data={"metadata": meta}
            )
            assert r.status_code == status, r.text
            assert (await client.get("/v1/documents")).json()["documents"] == []

    async def test_changed_metadata_relabels_without_new_chunks(self, served: str) -> None:
        """Re-uploading the same file with other metadata writes no chunk and the filter sees the new value."""
        headers = {"X-Chatbot-Tenant": f"t-relabel-{uuid.uuid4().hex[:8]}"}
        text = DOCS["hr-policy.md"][1].encode()
        async with httpx.AsyncClient(base_url=served, headers=headers) as client:
            first = await client.post(
                "/v1/documents", files={"file": ("p.md", text)}, data={"metadata": '{"v": 1}'}
            )
            again = await client.post(
                "/v1/documents", files={"file": ("p.md", text)}, data={"metadata": '{"v": 2}'}
            )
            assert first.json()["documents"][0]["written"] > 0
            assert again.json()["documents"][0]["written"] == 0
            assert again.json()["documents"][0]["unchanged"] is False
            for v, hits in ((1, 0), (2, 1)):
                r = await client.post("/v1/search", json={"query": QUESTION, "k": 1, "filter": {"v": v}})
                assert len(r.json()["results"]) == hits


class TestChatFilters:
    async def test_rest_chat(self, served: str, tenant: dict[str, str]) -> None:
        """POST /v1/chat with `filter` cites only the matching document."""
        async with httpx.AsyncClient(base_url=served, headers=tenant, timeout=30) as client:
            r = await client.post("/v1/chat", json={"message": QUESTION, "filter": ONLY_HR})
            unfiltered = await client.post("/v1/chat", json={"message": QUESTION})
        assert r.status_code == 200, r.text
        assert sources_in(r.json()["sources"]) == {"hr-policy.md"}
        assert sources_in(unfiltered.json()["sources"]) == set(DOCS)

    async def test_websocket_ask(self, served: str, tenant: dict[str, str]) -> None:
        """An ask frame with `filter` cites only the matching document; a bad filter is an error frame."""
        url = ws_url(served) + f"?tenant={tenant['X-Chatbot-Tenant']}"
        async with websockets.connect(url) as ws:
            frames = await ask_ws(ws, QUESTION, filter=ONLY_HR)
            sources = next(f for f in frames if f["type"] == "sources")
            assert sources_in(sources) == {"hr-policy.md"}
            await ws.send(json.dumps({"type": "ask", "message": QUESTION, "filter": {"a": {"nope": 1}}}))
            error = json.loads(await ws.recv())
            assert (error["type"], error["code"]) == ("error", "validation_error")

    async def test_openai_extension_field(self, served: str, tenant: dict[str, str]) -> None:
        """The openai SDK's extra_body={'metadata_filter': ...} narrows the sources."""
        async with AsyncOpenAI(
            base_url=f"{served}/v1", api_key="x", max_retries=0, default_headers=tenant
        ) as client:
            answer = await client.chat.completions.create(
                model=MODEL_ID,
                messages=[{"role": "user", "content": QUESTION}],
                extra_body={"metadata_filter": ONLY_HR},
            )
        assert sources_in(answer.model_dump()) == {"hr-policy.md"}

    async def test_ai_sdk_body(self, served: str, tenant: dict[str, str]) -> None:
        """useChat's body option {filter: ...} narrows the source-document parts."""
        body = {
            "id": "c1",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": QUESTION}]}],
            "filter": ONLY_HR,
        }
        async with httpx.AsyncClient(base_url=served, headers=tenant, timeout=30) as client:
            r = await client.post("/v1/ui/chat", json=body)
        assert r.status_code == 200, r.text
        parts = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        documents = [p for p in parts if p["type"] == "source-document"]
        assert {p["filename"] for p in documents} == {"hr-policy.md"}


class TestFiltersAndTheAnswerCache:
    @pytest.fixture
    async def cached(self, offline_providers: Providers, guide_store: VectorStore) -> AsyncIterator[str]:
        """The app with the answer cache on."""
        settings = make_settings(cache={"enabled": True})
        async with build_services(settings, providers=offline_providers, store=guide_store) as svc:
            async with serve_app(create_app(settings, services=svc)) as url:
                yield url

    async def test_a_filtered_question_never_uses_or_fills_the_cache(self, cached: str) -> None:
        """An answer computed under a filter is not served to an unfiltered question (nor the reverse)."""
        headers = {"X-Chatbot-Tenant": f"t-cache-{uuid.uuid4().hex[:8]}"}
        async with httpx.AsyncClient(base_url=cached, headers=headers, timeout=30) as client:
            for name, (meta, text) in DOCS.items():
                files = {"file": (name, text.encode())}
                await client.post("/v1/documents", files=files, data={"metadata": json.dumps(meta)})
            narrowed = (await client.post("/v1/chat", json={"message": QUESTION, "filter": ONLY_HR})).json()
            whole = (await client.post("/v1/chat", json={"message": QUESTION})).json()
            again = (await client.post("/v1/chat", json={"message": QUESTION, "filter": ONLY_HR})).json()
        assert (narrowed["cached"], whole["cached"], again["cached"]) == (False, False, False)
        assert sources_in(whole["sources"]) == set(DOCS)
        assert sources_in(again["sources"]) == {"hr-policy.md"}
