"""GET /v1/documents/{doc_id}/chunks/{n}: a cited passage with its neighbours, tenant-scoped; and sources that
carry the page and character span a loader stored."""

from __future__ import annotations

import uuid

import httpx
import pytest

from chatbot.events import SourcesEvent
from chatbot.rag.retriever import as_chunks, as_sources
from chatbot.stores.base import ScoredChunk
from chatbot.stores.event_codec import decode_event, encode_event

SECTIONS = 8
DOC = "\n\n".join(
    f"## Section {i}\n\n" + f"Paragraph {i} explains topic number {i} in some detail. " * 30
    for i in range(SECTIONS)
).encode()


@pytest.fixture
async def uploaded(served: str) -> tuple[dict[str, str], str, int]:
    """A fresh tenant with one multi-chunk document: (headers, doc_id, chunk count)."""
    headers = {"X-Chatbot-Tenant": f"t-doc-{uuid.uuid4().hex[:8]}"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as client:
        r = await client.post("/v1/documents", files={"file": ("topics.md", DOC)})
    assert r.status_code == 201, r.text
    doc = r.json()["documents"][0]
    assert doc["chunks"] >= 5
    return headers, doc["doc_id"], doc["chunks"]


class TestPassage:
    async def test_a_cited_chunk_with_its_neighbours(
        self, served: str, uploaded: tuple[dict[str, str], str, int]
    ) -> None:
        """The chunk a source cites comes back with `context` chunks on each side, in document order."""
        headers, doc_id, _ = uploaded
        async with httpx.AsyncClient(base_url=served, headers=headers) as client:
            hit = (await client.post("/v1/search", json={"query": "topic number 3", "k": 1})).json()[
                "results"
            ][0]
            r = await client.get(f"/v1/documents/{hit['doc_id']}/chunks/{hit['chunk_index']}?context=2")
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["doc_id"], body["chunk_index"], body["source"]) == (
            doc_id,
            hit["chunk_index"],
            "topics.md",
        )
        indexes = [c["chunk_index"] for c in body["chunks"]]
        n = hit["chunk_index"]
        assert indexes == list(range(max(0, n - 2), n + 3))
        assert hit["text"] in [c["text"] for c in body["chunks"]]

    async def test_edges_and_default_context(
        self, served: str, uploaded: tuple[dict[str, str], str, int]
    ) -> None:
        """At the first and last chunk the passage is cut at the document's edge; the default context is 1."""
        headers, doc_id, count = uploaded
        async with httpx.AsyncClient(base_url=served, headers=headers) as client:
            first = (await client.get(f"/v1/documents/{doc_id}/chunks/0")).json()
            last = (await client.get(f"/v1/documents/{doc_id}/chunks/{count - 1}?context=3")).json()
            alone = (await client.get(f"/v1/documents/{doc_id}/chunks/1?context=0")).json()
        assert [c["chunk_index"] for c in first["chunks"]] == [0, 1]
        assert [c["chunk_index"] for c in last["chunks"]] == list(range(count - 4, count))
        assert [c["chunk_index"] for c in alone["chunks"]] == [1]

    async def test_another_tenants_document_is_404(
        self, served: str, uploaded: tuple[dict[str, str], str, int]
    ) -> None:
        """A doc_id of another tenant is 404, exactly as an unknown one."""
        _, doc_id, _ = uploaded
        async with httpx.AsyncClient(base_url=served, headers={"X-Chatbot-Tenant": "t-intruder"}) as client:
            theirs = await client.get(f"/v1/documents/{doc_id}/chunks/0")
            unknown = await client.get(f"/v1/documents/{uuid.uuid4()}/chunks/0")
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"] == "unknown_document"

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("chunks/999", 404),
            ("chunks/-1", 404),
            ("chunks/1e3", 404),
            ("chunks/%D9%A3", 404),  # an Arabic-Indic digit: str.isdigit() says yes, int() would accept it
            ("chunks/99999999999999999999", 404),
            ("chunks/0?context=11", 400),
            ("chunks/0?context=-1", 400),
            ("chunks/0?context=abc", 400),
            ("chunks/0?context=" + "9" * 50, 400),
        ],
    )
    async def test_hostile_paths(
        self, served: str, uploaded: tuple[dict[str, str], str, int], path: str, status: int
    ) -> None:
        """Chunk numbers that name no chunk are 404; a context outside 0..10 is 400 invalid_context."""
        headers, doc_id, _ = uploaded
        async with httpx.AsyncClient(base_url=served, headers=headers) as client:
            r = await client.get(f"/v1/documents/{doc_id}/{path}")
        assert r.status_code == status, r.text


class TestSourceFields:
    def test_pages_and_spans_travel_from_payload_to_wire_and_back(self) -> None:
        """page_start/page_end/char_start/char_end stored on a chunk reach the wire source, the event log codec
        and the answer cache's chunks; a chunk without them has none on the wire."""
        payload = {"doc_id": "d", "source": "m.pdf", "title": "Manual", "heading_path": ["Intro"], "chunk_index": 4,
                   "text": "t", "page_start": 13, "page_end": 14, "char_start": 1200, "char_end": 1900}  # fmt: skip
        paged = ScoredChunk.from_payload(payload, 0.5)
        plain = ScoredChunk.from_payload(
            {**payload, "page_start": None, "page_end": "x", "char_start": True}, 0.5
        )
        sources = as_sources([paged, plain])
        wire = sources[0].to_dict()
        assert (wire["page_start"], wire["page_end"], wire["char_start"], wire["char_end"]) == (
            13,
            14,
            1200,
            1900,
        )
        assert not {"page_start", "page_end", "char_start"} & set(sources[1].to_dict())
        event = SourcesEvent(sources=tuple(sources))
        assert decode_event(encode_event(event)) == event
        assert as_chunks(sources)[0].page_start == 13
