"""Qdrant Edge filters: the tenant scope every query is built on, a metadata filter (stores/filters.py) as Edge
conditions, and the payload index each filtered field gets. The same conditions as stores/qdrant/conditions.py
(the congruence tests compare both engines' answers), in qdrant_edge's types."""

from __future__ import annotations

import numpy as np
import qdrant_edge as edge

from chatbot.stores.filters import MetadataFilter
from chatbot.stores.ids import check_tenant

METADATA = "metadata"  # the payload key holding a document's metadata (stores/filters.py)
SPARSE = "bm25"
DENSE = "dense"

Condition = edge.FieldCondition | edge.Filter | edge.HasVectorCondition
IndexSchema = edge.PayloadSchemaType | edge.KeywordIndexParams | edge.IntegerIndexParams


def tenant_filter(
    tenant: str, *, doc_id: str | None = None, extra: list[Condition] | None = None
) -> edge.Filter:
    """The one way to scope a query. Without a tenant it raises instead of matching everything."""
    must: list[Condition] = [edge.FieldCondition(key="tenant", match=edge.MatchValue(check_tenant(tenant)))]
    if doc_id is not None:
        must.append(edge.FieldCondition(key="doc_id", match=edge.MatchValue(doc_id)))
    return edge.Filter(must=must + (extra or []))  # type: ignore[arg-type]


def idf_corpus(tenant: str) -> edge.SearchParams:
    """A sparse search weighted by the tenant's own IDF (statistics.py): N and df are counted over the
    tenant's points that have BM25 terms (a chunk without terms is stored without the sparse vector)."""
    return edge.SearchParams(
        idf=edge.IdfParams(corpus=tenant_filter(tenant, extra=[edge.HasVectorCondition(SPARSE)]))
    )


def metadata_conditions(where: MetadataFilter) -> list[Condition]:
    """A metadata filter as Edge conditions on `metadata.<key>` (never on a system field: a key named `tenant`
    reads metadata.tenant, so it narrows a query but never widens its tenant scope)."""
    must: list[Condition] = []
    for key, cond in where.conditions():
        field = f"{METADATA}.{key}"
        if cond.any is None:
            bounds = edge.RangeFloat(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte)
            must.append(edge.FieldCondition(key=field, range=bounds))
        elif len(cond.any) == 1 or any(isinstance(v, bool) for v in cond.any):
            # MatchAny takes strings or integers only; booleans (and a single value) match one by one
            must.append(
                edge.Filter(should=[edge.FieldCondition(key=field, match=_match(v)) for v in cond.any])
            )
        else:
            must.append(edge.FieldCondition(key=field, match=edge.MatchAny(list(cond.any))))  # type: ignore[arg-type]
    return must


def _match(value: bool | int | str) -> edge.MatchValue:
    """MatchValue of one value. qdrant-edge-py 0.9 reads a Python bool as the integer 1 or 0 (so `true` would
    match a stored 1 and never a stored true); numpy's bool reaches it as a bool."""
    return edge.MatchValue(np.bool_(value) if isinstance(value, bool) else value)  # type: ignore[arg-type]


def index_schemas(where: MetadataFilter) -> dict[str, edge.PayloadSchemaType]:
    """The payload index each filtered field gets: float for a range, else by the value type."""
    out: dict[str, edge.PayloadSchemaType] = {}
    for key, cond in where.conditions():
        if cond.any is None:
            schema = edge.PayloadSchemaType.Float
        elif all(isinstance(v, bool) for v in cond.any):
            schema = edge.PayloadSchemaType.Bool
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in cond.any):
            schema = edge.PayloadSchemaType.Integer
        else:
            schema = edge.PayloadSchemaType.Keyword
        out[f"{METADATA}.{key}"] = schema
    return out


SYSTEM_INDEXES: dict[str, IndexSchema] = {
    "tenant": edge.KeywordIndexParams(is_tenant=True),
    "doc_id": edge.PayloadSchemaType.Keyword,
    "chunk_index": edge.PayloadSchemaType.Integer,
}
