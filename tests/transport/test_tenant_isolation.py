"""Tenant isolation through every endpoint of the real app on hypercorn (open access: the tenant comes from
X-Chatbot-Tenant, or ?tenant= on a websocket URL). Two tenants upload overlapping documents (same file names,
tenant-specific secrets); neither ever sees, changes or deletes the other's."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from openai import AsyncOpenAI

from tests.transport.clients import ask_ws, sse_events, ws_url

QUESTION = "What is the vault code, and who may open the vault?"


@dataclass(frozen=True)
class Tenant:
    name: str
    company: str
    secret: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Chatbot-Tenant": self.name}

    def files(self) -> dict[str, bytes]:
        return {
            "handbook.md": (
                f"# Handbook\n\n## Vault\n\nThe vault code of {self.company} is {self.secret}. Only staff of "
                f"{self.company} may open the vault.\n\n## Parking\n\nVisitors park behind the building.\n"
            ).encode(),
            "faq.txt": f"To reset the vault code ({self.secret}), ask {self.company} security.".encode(),
        }


@dataclass
class Pair:
    a: Tenant
    b: Tenant
    docs: dict[str, dict[str, str]]  # tenant name -> source -> doc_id


@pytest.fixture
async def pair(served: str) -> Pair:
    """Two tenants with the same file names uploaded over HTTP."""
    suffix = uuid.uuid4().hex[:8]
    a = Tenant(f"t-acme-{suffix}", "Acme", f"ALPHA-{suffix}")
    b = Tenant(f"t-globex-{suffix}", "Globex", f"BRAVO-{suffix}")
    docs: dict[str, dict[str, str]] = {}
    async with httpx.AsyncClient(base_url=served) as client:
        for t in (a, b):
            files = [("file", (name, data)) for name, data in t.files().items()]
            r = await client.post("/v1/documents", files=files, headers=t.headers)
            assert r.status_code == 201, r.text
            docs[t.name] = {d["source"]: d["doc_id"] for d in r.json()["documents"]}
    assert set(docs[a.name].values()).isdisjoint(docs[b.name].values())
    return Pair(a, b, docs)


def question_for(p: Pair) -> str:
    return f"{QUESTION} Is it {p.a.secret} at {p.a.company}?"  # B asks with A's own words


def assert_only_b(p: Pair, payload: Any) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    assert p.b.secret in text, "B's own document should answer B"
    assert p.a.secret not in text.replace(question_for(p), "").replace(json.dumps(question_for(p))[1:-1], "")


class TestChatEndpoints:
    async def test_rest_chat(self, served: str, pair: Pair) -> None:
        """POST /v1/chat as B: the answer and sources hold B's secret, never A's."""
        async with httpx.AsyncClient(base_url=served, headers=pair.b.headers) as client:
            r = await client.post("/v1/chat", json={"message": question_for(pair)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert_only_b(pair, {"answer": body["answer"], "sources": body["sources"]})
        assert {s["doc_id"] for s in body["sources"]} <= set(pair.docs[pair.b.name].values())

    async def test_sse_chat(self, served: str, pair: Pair) -> None:
        """The SSE stream as B carries only B's sources and text."""
        async with httpx.AsyncClient(base_url=served, headers=pair.b.headers) as client:
            _, events = await sse_events(
                client, "POST", "/v1/chat", json={"message": question_for(pair), "stream": True}
            )
        assert events[-1]["event"] == "done"
        assert_only_b(pair, [e["data"] for e in events if e["event"] in ("sources", "token")])

    async def test_websocket_with_tenant_query(self, served: str, pair: Pair) -> None:
        """A websocket opened with ?tenant=B answers from B's documents only."""
        async with websockets.connect(ws_url(served, f"/v1/ws?tenant={pair.b.name}")) as ws:
            frames = await ask_ws(ws, question_for(pair))
        assert frames[-1]["type"] == "done"
        assert_only_b(pair, [f for f in frames if f["type"] in ("sources", "token")])

    @pytest.mark.parametrize("via", ["header", "query"])
    async def test_openai_compatible_chat_completions(self, served: str, pair: Pair, via: str) -> None:
        """/v1/chat/completions as B (X-Chatbot-Tenant or ?tenant=) answers from B's documents only."""
        headers = pair.b.headers if via == "header" else {}
        query = {"tenant": pair.b.name} if via == "query" else {}
        async with AsyncOpenAI(
            base_url=f"{served}/v1",
            api_key="unused",
            max_retries=0,
            default_headers=headers,
            default_query=query,
        ) as client:
            completion = await client.chat.completions.create(
                model="chatbot", messages=[{"role": "user", "content": question_for(pair)}]
            )
        assert_only_b(pair, completion.choices[0].message.content or "")

    async def test_vercel_ui_chat(self, served: str, pair: Pair) -> None:
        """/v1/ui/chat (AI SDK UI stream) as B streams B's sources and text only."""
        message = {"role": "user", "parts": [{"type": "text", "text": question_for(pair)}]}
        async with httpx.AsyncClient(base_url=served, headers=pair.b.headers) as client:
            r = await client.post("/v1/ui/chat", json={"messages": [message]})
        assert r.status_code == 200, r.text
        parts = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert_only_b(pair, [p for p in parts if p.get("type") != "start"])


class TestOtherTenantsIds:
    async def test_conversation_events_and_stop_of_another_tenant_are_404(
        self, served: str, pair: Pair
    ) -> None:
        """A's conversation, answer events and stop are unknown to B."""
        async with httpx.AsyncClient(base_url=served) as client:
            body = (await client.post("/v1/chat", json={"message": QUESTION}, headers=pair.a.headers)).json()
            mid, cid = body["message_id"], body["conversation_id"]
            as_b = pair.b.headers
            r1 = await client.get(f"/v1/conversations/{cid}", headers=as_b)
            r2 = await client.get(f"/v1/chat/{mid}/events", headers=as_b)
            r3 = await client.post(f"/v1/chat/{mid}/stop", headers=as_b)
            r4 = await client.post(
                "/v1/chat", json={"message": "and then?", "conversation_id": cid}, headers=as_b
            )
            own = await client.get(f"/v1/conversations/{cid}", headers=pair.a.headers)
        assert [r.status_code for r in (r1, r2, r3, r4)] == [404, 404, 404, 404]
        assert own.status_code == 200
        assert pair.a.secret in json.dumps(own.json())


class TestDocuments:
    async def test_list_shows_only_the_callers_documents(self, served: str, pair: Pair) -> None:
        """Both tenants list the same file names with their own doc ids."""
        async with httpx.AsyncClient(base_url=served) as client:
            listed = {
                t.name: (await client.get("/v1/documents", headers=t.headers)).json()["documents"]
                for t in (pair.a, pair.b)
            }
        for name, docs in listed.items():
            assert {d["source"]: d["doc_id"] for d in docs} == pair.docs[name]

    async def test_delete_by_another_tenants_id_is_404_and_removes_nothing(
        self, served: str, pair: Pair
    ) -> None:
        """B deleting A's doc id gets 404 unknown_document; A still has every chunk and still answers."""
        a_handbook = pair.docs[pair.a.name]["handbook.md"]
        async with httpx.AsyncClient(base_url=served) as client:
            before = (await client.get("/v1/documents", headers=pair.a.headers)).json()["documents"]
            r = await client.delete(f"/v1/documents/{a_handbook}", headers=pair.b.headers)
            after = (await client.get("/v1/documents", headers=pair.a.headers)).json()["documents"]
            answer = (
                await client.post("/v1/chat", json={"message": QUESTION}, headers=pair.a.headers)
            ).json()
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_document")
        assert after == before
        assert pair.a.secret in answer["answer"]

    async def test_reingest_is_per_tenant(self, served: str, pair: Pair) -> None:
        """Re-uploading B's file is unchanged for B; A changing its copy of the same name leaves B's alone."""
        handbook_b = pair.b.files()["handbook.md"]
        changed_a = pair.a.files()["handbook.md"].replace(b"behind the building", b"in the garage")
        async with httpx.AsyncClient(base_url=served) as client:
            before_b = (await client.get("/v1/documents", headers=pair.b.headers)).json()["documents"]
            r_a = await client.post(
                "/v1/documents", files={"file": ("handbook.md", changed_a)}, headers=pair.a.headers
            )
            r_b = await client.post(
                "/v1/documents", files={"file": ("handbook.md", handbook_b)}, headers=pair.b.headers
            )
            after_b = (await client.get("/v1/documents", headers=pair.b.headers)).json()["documents"]
        assert r_a.json()["documents"][0]["unchanged"] is False
        assert r_b.json()["documents"][0]["unchanged"] is True
        assert after_b == before_b
