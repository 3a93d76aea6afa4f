"""POST /v1/search: ranked chunks for a query, without an answer (the retriever the chat answers with).

    {"query": "parental leave", "k": 5, "filter": {"tags": {"any": ["hr"]}, "year": {"gte": 2020}}}
    -> {"results": [{"n": 1, "doc_id": ..., "title": ..., "page_start": 13, ..., "text": ..., "score": 0.82}]}

The same embed -> search -> rerank as an answer's sources, scoped to the caller's tenant (a filter narrows
it, never widens it: see stores/filters.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint

from chatbot.api.context import services, tenant
from chatbot.api.http import json_body
from chatbot.api.responses import UPSTREAM, SourceDoc
from chatbot.api.routes import route
from chatbot.api.wire import FILTER_DESCRIPTION, validate
from chatbot.errors import BadRequest
from chatbot.events import Source
from chatbot.stores.base import MetadataFilter
from chatbot.wiring import Services

bp = Blueprint("search", __name__)
MAX_K = 50


class SearchBody(BaseModel):
    """POST /v1/search"""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000, description="What to search for.")
    k: int = Field(5, ge=1, le=MAX_K, description="How many chunks to return.")
    filter: MetadataFilter | None = Field(None, description=FILTER_DESCRIPTION)


class SearchResults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[SourceDoc] = Field(description="Best first; `n` is the rank.")


@route(
    bp,
    "POST",
    "/v1/search",
    role="chat",
    body=SearchBody,
    response=SearchResults,
    errors=(413, 422, *UPSTREAM),
    summary="Ranked chunks with scores for a query (optional metadata filter), without an answer.",
)
async def search() -> Any:
    body: SearchBody = validate(SearchBody, await json_body())
    found = await search_chunks(services(), tenant(), body.query, body.k, body.filter)
    return {"results": [s.to_dict() for s in found]}


async def search_chunks(
    svc: Services, tenant_id: str, query: str, k: int, where: MetadataFilter | None
) -> list[Source]:
    """The tenant's best `k` chunks for `query` (shared with the MCP tool `search`)."""
    if not query.strip():
        raise BadRequest("The query is empty.", code="empty_query")
    return await svc.pipeline.retriever.search(tenant_id, query, where=where, top_k=min(k, MAX_K))
