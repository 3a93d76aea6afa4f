"""The payload indexes a Qdrant server needs: the system fields (tenant, doc_id, BM25 term ids) when the
collection is opened, and each metadata field a filter uses, created on its first use. Local mode has no
payload indexes (qdrant-client warns), so there this does nothing."""

from __future__ import annotations

import logging

from qdrant_client import models

from chatbot.errors import VectorStoreUnavailable
from chatbot.stores.filters import MetadataFilter
from chatbot.stores.qdrant.conditions import METADATA
from chatbot.stores.qdrant.statistics import TERMS_FIELD, Operation, Run

log = logging.getLogger(__name__)


def index_schemas(where: MetadataFilter) -> dict[str, models.PayloadSchemaType]:
    """The payload index each filtered field needs on a server: float for a range, else by the value type."""
    out: dict[str, models.PayloadSchemaType] = {}
    for key, cond in where.conditions():
        if cond.any is None:
            schema = models.PayloadSchemaType.FLOAT
        elif all(isinstance(v, bool) for v in cond.any):
            schema = models.PayloadSchemaType.BOOL
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in cond.any):
            schema = models.PayloadSchemaType.INTEGER
        else:
            schema = models.PayloadSchemaType.KEYWORD
        out[f"{METADATA}.{key}"] = schema
    return out


class PayloadIndexes:
    """The payload indexes of one collection on a server (nothing in local mode)."""

    def __init__(self, run: Run, collection: str, *, is_local: bool) -> None:
        self._run = run
        self._collection = collection
        self._is_local = is_local
        self._indexed: set[str] = set()  # metadata fields indexed for filters (created on first use)

    async def ensure_system(self, *, sparse: bool, existing: set[str]) -> None:
        """The payload indexes a server needs that the collection lacks: tenant, doc_id, and the BM25 term
        ids that per-tenant document frequencies are counted on (added to collections made before them)."""
        if self._is_local:
            return  # payload indexes have no effect in local mode (qdrant-client warns); a server needs them
        wanted: dict[str, models.PayloadSchemaType | models.PayloadSchemaParams] = {
            "tenant": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            "doc_id": models.PayloadSchemaType.KEYWORD,
        }
        if sparse:
            wanted[TERMS_FIELD] = models.IntegerIndexParams(
                type=models.IntegerIndexType.INTEGER, lookup=True, range=False
            )
        for field, schema in wanted.items():
            if field not in existing:
                await self._run(_create_index(self._collection, field, schema))

    async def ensure_filtered(self, where: MetadataFilter) -> None:
        """On a server, create the payload index of each filtered field on its first use (local mode has no
        payload indexes). A field indexed with another type keeps its index: Qdrant still filters correctly."""
        if self._is_local:
            return
        for field, schema in index_schemas(where).items():
            if field in self._indexed:
                continue
            self._indexed.add(field)
            try:
                await self._run(_create_index(self._collection, field, schema))
            except VectorStoreUnavailable:
                self._indexed.discard(field)
                log.warning("could not create the payload index of %s", field)


def _create_index(
    collection: str, field: str, schema: models.PayloadSchemaType | models.PayloadSchemaParams
) -> Operation:
    return lambda c: c.create_payload_index(collection, field, schema)
