"""REST and SSE against the real app on hypercorn, with the real offline models."""

from __future__ import annotations

import httpx
import pytest

from tests.transport.clients import sse_events


class TestChatJson:
    async def test_answers_with_sources(self, served: str) -> None:
        """POST /v1/chat returns the answer, its sources, a conversation id and usage."""
        async with httpx.AsyncClient(base_url=served) as client:
            r = await client.post("/v1/chat", json={"message": "How do I upload documents over HTTP?"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"].startswith("From the documents")
        assert body["sources"]
        assert body["sources"][0]["n"] == 1
        assert any("documents" in s["source"] for s in body["sources"])
        assert body["usage"]["total_tokens"] > 0
        assert body["finish_reason"] == "stop"
        assert body["conversation_id"]
        assert r.headers["X-Request-ID"]

    async def test_conversation_history_is_saved(self, served: str) -> None:
        """Both turns of an answer are saved under its conversation."""
        async with httpx.AsyncClient(base_url=served) as client:
            body = (await client.post("/v1/chat", json={"message": "What is a tenant?"})).json()
            r = await client.get(f"/v1/conversations/{body['conversation_id']}")
        turns = r.json()["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"]
        assert turns[1]["content"] == body["answer"]
        assert turns[1]["stopped"] is False


class TestChatSse:
    async def test_streams_events_with_ids_and_headers(self, served: str) -> None:
        """stream=true returns SSE with seq ids, no-buffering headers, and ends with done."""
        async with httpx.AsyncClient(base_url=served) as client:
            r, events = await sse_events(
                client, "POST", "/v1/chat", json={"message": "How do I stop an answer?", "stream": True}
            )
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert [e["event"] for e in events][:2] == ["start", "sources"]
        assert events[-1]["event"] == "done"
        assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))

    async def test_accept_header_selects_sse(self, served: str) -> None:
        """Accept: text/event-stream streams without the stream flag."""
        async with httpx.AsyncClient(base_url=served) as client:
            _, events = await sse_events(
                client,
                "POST",
                "/v1/chat",
                json={"message": "What files are supported?"},
                headers={"Accept": "text/event-stream"},
            )
        assert events[-1]["event"] == "done"

    async def test_resume_after_finish_replays_the_rest_exactly_once(self, served: str) -> None:
        """GET /events with Last-Event-ID returns every later event once, even after the answer finished."""
        async with httpx.AsyncClient(base_url=served) as client:
            _, events = await sse_events(
                client, "POST", "/v1/chat", json={"message": "How do I resume an answer?", "stream": True}
            )
            mid = events[0]["data"]["message_id"]
            _, rest = await sse_events(
                client, "GET", f"/v1/chat/{mid}/events", headers={"Last-Event-ID": "2"}
            )
        assert [e["id"] for e in rest] == [e["id"] for e in events[2:]]
        assert [e["data"] for e in rest] == [e["data"] for e in events[2:]]


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (b"{not json", 400, "invalid_json"),
            (b'{"message": ""}', 400, "empty_message"),
            (b'{"message": "   "}', 400, "empty_message"),
            (b'{"nope": 1}', 422, "validation_error"),
            (b'{"message": "hi", "conversation_id": "missing"}', 404, "unknown_conversation"),
            (b'{"message": "hi", "extra": true}', 422, "validation_error"),
            (b"[]", 422, "validation_error"),
        ],
    )
    async def test_chat_errors(self, served: str, body: bytes, status: int, code: str) -> None:
        """Bad chat bodies get their status and JSON error code."""
        async with httpx.AsyncClient(base_url=served) as client:
            r = await client.post("/v1/chat", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == status
        assert r.json()["error"]["code"] == code
        assert r.json()["error"]["request_id"]

    async def test_message_too_long(self, served: str) -> None:
        """A message over the limit is 413 message_too_long."""
        async with httpx.AsyncClient(base_url=served) as client:
            r = await client.post("/v1/chat", json={"message": "a" * 4001})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "message_too_long")

    async def test_unknown_message_events_and_stop(self, served: str) -> None:
        """Resume and stop on an unknown message id are 404 unknown_message."""
        async with httpx.AsyncClient(base_url=served) as client:
            r1 = await client.get("/v1/chat/msg_nope/events")
            r2 = await client.post("/v1/chat/msg_nope/stop")
        assert r1.status_code == r2.status_code == 404
        assert r1.json()["error"]["code"] == r2.json()["error"]["code"] == "unknown_message"

    async def test_unknown_route_and_method(self, served: str) -> None:
        """Unknown routes and methods get JSON errors, not HTML."""
        async with httpx.AsyncClient(base_url=served) as client:
            r1 = await client.get("/nope")
            r2 = await client.put("/v1/chat")
        assert (r1.status_code, r1.json()["error"]["code"]) == (404, "not_found")
        assert (r2.status_code, r2.json()["error"]["code"]) == (405, "method_not_allowed")


class TestDocuments:
    async def test_upload_list_reingest_delete(self, served: str) -> None:
        """Upload a file, find it listed, re-upload writes nothing, delete removes all its chunks."""
        headers = {"X-Chatbot-Tenant": "docs-test"}
        text = b"# Llamas\n\nLlamas are woolly animals from the Andes.\n\n## Care\n\nFeed them hay daily.\n"
        async with httpx.AsyncClient(base_url=served, headers=headers) as client:
            r = await client.post("/v1/documents", files={"file": ("llamas.md", text, "text/markdown")})
            assert r.status_code == 201, r.text
            doc = r.json()["documents"][0]
            assert doc["chunks"] >= 1
            assert doc["written"] == doc["chunks"]
            again = (await client.post("/v1/documents", files={"file": ("llamas.md", text)})).json()[
                "documents"
            ][0]
            assert again["unchanged"] is True
            assert again["written"] == 0
            listed = (await client.get("/v1/documents")).json()["documents"]
            assert [d["source"] for d in listed] == ["llamas.md"]
            answer = (await client.post("/v1/chat", json={"message": "How should I feed llamas?"})).json()
            assert "hay" in answer["answer"]
            r = await client.delete(f"/v1/documents/{doc['doc_id']}")
            assert r.json()["deleted_chunks"] == doc["chunks"]
            assert (await client.get("/v1/documents")).json()["documents"] == []
            r = await client.delete(f"/v1/documents/{doc['doc_id']}")
            assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_document")

    async def test_unsupported_upload(self, served: str) -> None:
        """An unsupported file type is 415 unsupported_media_type; nothing is written."""
        async with httpx.AsyncClient(base_url=served, headers={"X-Chatbot-Tenant": "bad-upload"}) as client:
            r = await client.post("/v1/documents", files={"file": ("x.exe", b"MZ\x00\x01")})
            listed = (await client.get("/v1/documents")).json()["documents"]
        assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
        assert listed == []


class TestHealth:
    async def test_healthz_and_readyz(self, served: str) -> None:
        """healthz is alive; readyz reports the store and models."""
        async with httpx.AsyncClient(base_url=served) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["checks"]["vector_store"] is True
