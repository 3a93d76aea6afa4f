"""How a chunk is laid out as a Qdrant point: the named vectors (dense, BM25), the payload with the BM25
term ids that tenant statistics count on, and a stored point read back for a mirror."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qdrant_client import models

from chatbot.providers.base import SparseVector
from chatbot.stores.base import ChunkRecord
from chatbot.stores.qdrant.statistics import TERMS_FIELD

DENSE = "dense"
SPARSE = "bm25"
WITHOUT_TERMS = models.PayloadSelectorExclude(exclude=[TERMS_FIELD])  # hits and mirrors never need them


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """One point as read back for a mirror: its id, tenant, vectors and payload."""

    point_id: str
    tenant: str
    dense: Sequence[float]
    sparse: SparseVector | None
    payload: dict[str, Any]


def build_points(
    records: Sequence[ChunkRecord],
    dense: Sequence[Sequence[float]],
    sparse: Sequence[SparseVector] | None,
    offset: int,
) -> list[models.PointStruct]:
    points = []
    for i, rec in enumerate(records, start=offset):
        vector: dict[str, Any] = {DENSE: list(dense[i])}
        payload = rec.payload()
        if sparse is not None:
            vector[SPARSE] = models.SparseVector(indices=sparse[i].indices, values=sparse[i].values)
            payload[TERMS_FIELD] = list(sparse[i].indices)
        points.append(models.PointStruct(id=rec.point_id, vector=vector, payload=payload))
    return points


def stored_point(point: models.Record) -> StoredPoint | None:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    dense = vectors.get(DENSE)
    if dense is None:
        return None
    raw = vectors.get(SPARSE)
    sparse = (
        SparseVector(list(raw.indices), list(raw.values)) if isinstance(raw, models.SparseVector) else None
    )
    payload = point.payload or {}
    return StoredPoint(str(point.id), str(payload.get("tenant", "")), dense, sparse, payload)  # type: ignore[arg-type]
