"""The tenant's documents: list, delete, and a cited passage with its neighbours.

    GET    /v1/documents                              the documents and their chunk counts
    DELETE /v1/documents/{doc_id}                     a document and all its chunks
    GET    /v1/documents/{doc_id}/chunks/{n}?context=2  chunk n (a source's chunk_index) with up to 2 chunks
                                                      either side, so a client can show a citation in context

Uploads stay in http.py (POST /v1/documents). Everything is tenant-scoped: another tenant's doc_id is 404.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, request

from chatbot.api.context import services, tenant
from chatbot.api.responses import DeleteResult, DocumentList
from chatbot.api.routes import Param, route
from chatbot.errors import BadRequest, UnknownDocument
from chatbot.stores.base import ScoredChunk, VectorStore

bp = Blueprint("documents", __name__)
MAX_CONTEXT = 10


class ChunkDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc_id: str = Field(min_length=1)
    source: str
    title: str
    heading_path: list[str]
    chunk_index: int = Field(ge=0)
    page_start: int | None = Field(None, ge=1)
    page_end: int | None = Field(None, ge=1)
    char_start: int | None = Field(None, ge=0)
    char_end: int | None = Field(None, ge=0)
    metadata: dict[str, Any]
    text: str
    score: float


class Passage(BaseModel):
    """A cited chunk and its neighbours, in document order."""

    model_config = ConfigDict(extra="forbid")

    doc_id: str = Field(min_length=1)
    title: str
    source: str
    chunk_index: int = Field(ge=0, description="The cited chunk.")
    chunks: list[ChunkDoc] = Field(min_length=1, description="The cited chunk with its neighbours, in order.")


@route(bp, "GET", "/v1/documents", role="ingest", response=DocumentList, summary="The tenant's documents.")
async def list_documents() -> Any:
    docs = await services().store.list_documents(tenant())
    return {"documents": [d.to_dict() for d in docs]}


@route(
    bp,
    "DELETE",
    "/v1/documents/<doc_id>",
    role="ingest",
    response=DeleteResult,
    errors=(404,),
    summary="Delete a document and all its chunks.",
)
async def delete_document(doc_id: str) -> Any:
    deleted = await services().ingestor.delete(tenant(), doc_id)
    if not deleted:
        raise UnknownDocument()
    return {"doc_id": doc_id, "deleted_chunks": deleted}


@route(
    bp,
    "GET",
    "/v1/documents/<doc_id>/chunks/<chunk_index>",
    role="chat",
    response=Passage,
    errors=(404, 422),
    params=(
        Param("chunk_index", "path", {"type": "integer", "minimum": 0}, "A source's chunk_index."),
        Param(
            "context",
            "query",
            {"type": "integer", "minimum": 0, "maximum": MAX_CONTEXT, "default": 1},
            "How many neighbouring chunks to return on each side.",
        ),
    ),
    summary="A cited passage (a source's doc_id and chunk_index) with its neighbouring chunks.",
)
async def passage(doc_id: str, chunk_index: str) -> Any:
    if not (chunk_index.isascii() and chunk_index.isdigit()) or len(chunk_index) > 9:
        raise UnknownDocument("No such chunk.")  # a path that names no chunk: not found, like an unknown id
    cited = int(chunk_index)
    raw = request.args.get("context", "1")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 2 or int(raw) > MAX_CONTEXT:
        raise BadRequest(f"context is an integer from 0 to {MAX_CONTEXT}.", code="invalid_context")
    chunks = await read_passage(services().store, tenant(), doc_id, cited, int(raw))
    return passage_body(chunks, cited)


async def read_passage(
    store: VectorStore, tenant_id: str, doc_id: str, chunk_index: int, context: int
) -> list[ScoredChunk]:
    """Chunk `chunk_index` of the tenant's document with `context` chunks either side; UnknownDocument
    (404) when the tenant has no such chunk. Shared with the MCP tool get_passage."""
    chunks = await store.chunks(tenant_id, doc_id, max(0, chunk_index - context), chunk_index + context)
    if not any(c.chunk_index == chunk_index for c in chunks):
        raise UnknownDocument()
    return chunks


def passage_body(chunks: list[ScoredChunk], cited: int) -> dict[str, Any]:
    """A passage as JSON (Passage in the OpenAPI document)."""
    first = chunks[0]
    return {
        "doc_id": first.doc_id,
        "title": first.title,
        "source": first.source,
        "chunk_index": cited,
        "chunks": [c.to_dict() for c in chunks],
    }
