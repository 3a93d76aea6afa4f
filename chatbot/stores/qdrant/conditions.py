"""Qdrant filters: the tenant scope every query is built on, and a metadata filter (stores/filters.py) as
Qdrant conditions. Every search, scroll and delete by filter goes through `tenant_filter`, which refuses
to build a filter without a tenant: a query can never silently search every tenant's documents."""

from __future__ import annotations

from qdrant_client import models

from chatbot.stores.filters import MetadataFilter
from chatbot.stores.ids import check_tenant


def tenant_filter(
    tenant: str, *, doc_id: str | None = None, extra: models.Filter | None = None
) -> models.Filter:
    """The one way to scope a query. Without a tenant it raises instead of matching everything."""
    must: list[models.Condition] = [
        models.FieldCondition(key="tenant", match=models.MatchValue(value=check_tenant(tenant)))
    ]
    if doc_id is not None:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)))
    if extra is not None:
        must.append(extra)
    return models.Filter(must=must)


METADATA = "metadata"  # the payload key holding a document's metadata (stores/filters.py)


def metadata_filter(where: MetadataFilter) -> models.Filter:
    """A metadata filter as Qdrant conditions on `metadata.<key>` (never on a system field: a key named
    `tenant` reads metadata.tenant, so it can narrow a query but never widen its tenant scope)."""
    must: list[models.Condition] = []
    for key, cond in where.conditions():
        field = f"{METADATA}.{key}"
        if cond.any is None:
            must.append(
                models.FieldCondition(
                    key=field, range=models.Range(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte)
                )
            )
        elif len(cond.any) == 1 or any(isinstance(v, bool) for v in cond.any):
            # MatchAny takes strings or integers only; booleans (and a single value) match one by one
            must.append(
                models.Filter(
                    should=[
                        models.FieldCondition(key=field, match=models.MatchValue(value=v)) for v in cond.any
                    ]
                )
            )
        else:
            must.append(models.FieldCondition(key=field, match=models.MatchAny(any=list(cond.any))))
    return models.Filter(must=must)
