"""Moving a collection from qdrant-client's local mode (the embedded engine before Qdrant Edge) into Edge, so
a store folder written by an older release keeps its documents when the engine changes: on first use of the
folder with Edge, the old collection's points are copied with their vectors and payloads (point ids kept).
The old files are left in place: setting qdrant.engine=qdrant-local still opens them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from chatbot.settings import QdrantSettings
from chatbot.stores.edge.conditions import DENSE, SPARSE
from chatbot.stores.qdrant.store import QdrantStore

log = logging.getLogger(__name__)


def legacy_collection(settings: QdrantSettings) -> bool:
    """True when the folder holds this collection in qdrant-client's local-mode layout."""
    location = settings.location
    return location != ":memory:" and (Path(location) / "collection" / settings.collection).is_dir()


async def copy_legacy(
    settings: QdrantSettings,
    write: Callable[[list[edge.Point]], Awaitable[None]],
    *,
    dense_model: str,
    dimensions: int,
    sparse: bool,
) -> int:
    """Copy every point of the local-mode collection through `write`; returns how many were copied. A
    collection filled by another embedding model raises EmbeddingMismatch, as it would have before."""
    old = QdrantStore(settings.model_copy(update={"engine": "qdrant-local"}))
    await old.open()
    copied = 0
    try:
        await old.ensure_collection(dense_model, dimensions, sparse=sparse)
        async for page in old.stream_points():
            points = []
            for p in page:
                vector: dict[str, Any] = {DENSE: list(p.dense)}
                if sparse and p.sparse is not None and p.sparse.indices:
                    vector[SPARSE] = edge.SparseVector(list(p.sparse.indices), list(p.sparse.values))
                points.append(edge.Point(p.point_id, vector, p.payload))
            if points:
                await write(points)
                copied += len(points)
    finally:
        await old.aclose()
    log.warning(
        "copied %d points of collection '%s' from qdrant-client's local mode", copied, settings.collection
    )
    return copied
