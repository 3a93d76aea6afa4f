"""An exact in-memory mirror of a local-mode collection, for searching without qdrant-client's Python loops.

qdrant-client's local mode checks the payload filter point by point in Python: a tenant-filtered dense query
over 10k x 384 costs ~76 ms of CPU (hybrid ~384 ms), holding the GIL. Local mode is single-process (Qdrant
holds a file lock), so MirroredStore sees every write and keeps this mirror exact: Qdrant stays the store
of record (and the API for servers), the mirror answers searches in about a millisecond.

Same semantics as Qdrant: cosine on normalised vectors with `score >= threshold`; sparse scores are the dot
product of the document weights with the query weighted by the searching tenant's IDF (statistics.py:
idf = ln((N - df + 0.5) / (df + 0.5) + 1) over the tenant's live points that have BM25 terms, never another
tenant's); only points sharing a term with the query match; RRF scores sum 1 / (rank + 2) (0-based ranks);
DBSF (distribution-based score fusion) maps each list's scores through mean +- 3 sample standard deviations
onto [0, 1] (a one-hit or constant list scores 0.5) and sums them, as qdrant-client's local mode does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from chatbot.providers.base import SparseVector
from chatbot.stores import fusion
from chatbot.stores.qdrant.statistics import idf

MAX_MASKS = 32  # cached filter masks per tenant


@dataclass(frozen=True, slots=True)
class Allow:
    """A payload predicate (a metadata filter): only the points it accepts are searched. `key` names it
    (the filter's canonical JSON): its mask over a tenant's points is cached until the tenant changes."""

    key: str
    test: Callable[[dict[str, Any]], bool]


@dataclass
class _Tenant:
    dims: int
    ids: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    sparse: list[dict[int, float] | None] = field(default_factory=list)
    alive: list[bool] = field(default_factory=list)
    dense: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    rows: dict[str, int] = field(default_factory=dict)
    docs: dict[str, dict[str, None]] = field(default_factory=dict)  # doc_id -> its live point ids
    # term -> (rows, values) appended on write (dead rows stay and are masked at query time), and the
    # numpy form of each term's list, built when a query first needs it after a write
    plists: dict[int, tuple[list[int], list[float]]] = field(default_factory=dict)
    parrays: dict[int, tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]] = field(default_factory=dict)
    df: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # live points per term (this tenant)
    with_terms: int = 0  # live points with at least one term (IDF's N, this tenant)
    masks: dict[str, npt.NDArray[np.bool_]] = field(
        default_factory=dict
    )  # Allow.key -> its mask; any write clears

    def __post_init__(self) -> None:
        self.dense = np.zeros((16, self.dims), dtype=np.float32)

    def add_terms(self, row: int, terms: dict[int, float]) -> None:
        for term, value in terms.items():
            rows, values = self.plists.setdefault(term, ([], []))
            rows.append(row)
            values.append(value)
            self.parrays.pop(term, None)

    def count_terms(self, terms: dict[int, float] | None, step: int) -> None:
        if terms:
            self.with_terms += step
            for term in terms:
                self.df[term] += step

    def posting(self, term: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]] | None:
        found = self.parrays.get(term)
        if found is None and term in self.plists:
            rows, values = self.plists[term]
            found = self.parrays[term] = (
                np.asarray(rows, dtype=np.intp),
                np.asarray(values, dtype=np.float32),
            )
        return found


@dataclass(frozen=True, slots=True)
class Hit:
    point_id: str
    score: float
    payload: dict[str, Any]


class LocalIndex:
    def __init__(self, dims: int = 0) -> None:
        self.dims = dims  # 0: taken from the first vector written
        self._tenants: dict[str, _Tenant] = {}
        self._where: dict[str, str] = {}  # point id -> tenant

    def __len__(self) -> int:
        return len(self._where)

    # -- writes (mirror every write made to Qdrant) ----------------------------------------------------

    def upsert(
        self,
        point_id: str,
        tenant: str,
        dense: Sequence[float],
        sparse: SparseVector | None,
        payload: dict[str, Any],
    ) -> None:
        self.delete([point_id])
        if not self.dims:
            self.dims = len(dense)
        t = self._tenants.get(tenant)
        if t is None:
            t = self._tenants[tenant] = _Tenant(self.dims)
        row = len(t.ids)
        if row == len(t.dense):
            t.dense = np.concatenate([t.dense, np.zeros_like(t.dense)])
        vector = np.asarray(dense, dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        t.dense[row] = vector / norm if norm > 0 else vector
        terms = dict(zip(sparse.indices, sparse.values, strict=True)) if sparse is not None else None
        t.masks.clear()
        t.ids.append(point_id)
        t.payloads.append(dict(payload))
        t.sparse.append(terms)
        t.alive.append(True)
        t.rows[point_id] = row
        t.docs.setdefault(str(payload.get("doc_id", "")), {})[point_id] = None
        self._where[point_id] = tenant
        if terms is not None:
            t.add_terms(row, terms)
        t.count_terms(terms, 1)

    def set_payload(self, point_ids: Sequence[str], values: dict[str, Any]) -> None:
        for pid in point_ids:
            if (tenant := self._where.get(pid)) is not None:
                t = self._tenants[tenant]
                t.payloads[t.rows[pid]].update(values)
                t.masks.clear()

    def delete(self, point_ids: Sequence[str]) -> None:
        for pid in point_ids:
            tenant = self._where.pop(pid, None)
            if tenant is None:
                continue
            t = self._tenants[tenant]
            row = t.rows.pop(pid)
            t.alive[row] = False
            t.masks.clear()
            doc = str(t.payloads[row].get("doc_id", ""))
            points = t.docs[doc]
            del points[pid]
            if not points:
                del t.docs[doc]
            t.count_terms(t.sparse[row], -1)
        for t in self._tenants.values():
            if len(t.ids) > 64 and len(t.rows) < len(t.ids) // 2:
                self._compact(t)

    def count(self, tenant: str) -> int:
        t = self._tenants.get(tenant)
        return len(t.rows) if t is not None else 0

    def document_points(self, tenant: str, doc_id: str) -> dict[str, dict[str, Any]]:
        """The live points of one document (point id -> payload), found without scanning the tenant."""
        t = self._tenants.get(tenant)
        if t is None:
            return {}
        return {pid: t.payloads[t.rows[pid]] for pid in t.docs.get(doc_id, ())}

    def payload_of(self, point_id: str) -> dict[str, Any] | None:
        tenant = self._where.get(point_id)
        if tenant is None:
            return None
        t = self._tenants[tenant]
        return t.payloads[t.rows[point_id]]

    # -- search ----------------------------------------------------------------------------------------

    def search(
        self,
        tenant: str,
        dense: Sequence[float] | None,
        sparse: SparseVector | None,
        limit: int,
        threshold: float | None = None,
        allow: Allow | None = None,
    ) -> list[Hit]:
        """One probe: a dense query (with its score threshold) or else a sparse one, over the points that
        `allow` accepts (all when None)."""
        if dense is not None:
            return self.dense_search(tenant, dense, limit, threshold, allow)
        if sparse is None:
            return []
        return self.sparse_search(tenant, sparse, limit, allow)

    def _mask(self, t: _Tenant, allow: Allow | None) -> npt.NDArray[np.bool_]:
        if allow is None:
            return np.asarray(t.alive, dtype=bool)
        mask = t.masks.get(allow.key)
        if mask is None:
            # O(points) in Python (~5 us a point here): computed once per filter until the tenant changes
            if len(t.masks) >= MAX_MASKS:
                t.masks.clear()
            allowed = np.fromiter((allow.test(p) for p in t.payloads), dtype=bool, count=len(t.payloads))
            mask = t.masks[allow.key] = allowed & np.asarray(t.alive, dtype=bool)
        return mask.copy()  # callers narrow it in place (the score threshold)

    def dense_search(
        self,
        tenant: str,
        query: Sequence[float],
        limit: int,
        threshold: float | None = None,
        allow: Allow | None = None,
    ) -> list[Hit]:
        t = self._tenants.get(tenant)
        if t is None or not t.rows:
            return []
        q = np.asarray(query, dtype=np.float32)
        norm = float(np.linalg.norm(q))
        if norm > 0:
            q = q / norm
        n = len(t.ids)
        scores = t.dense[:n] @ q
        valid = self._mask(t, allow)
        if threshold is not None:
            valid &= scores >= np.float32(threshold)
        return self._top(t, scores, valid, limit)

    def idfs(self, tenant: str, terms: Sequence[int]) -> list[float]:
        """The IDF of each term over the tenant's own points (statistics.TermStatistics, from memory)."""
        t = self._tenants.get(tenant)
        if t is None:
            return [idf(0, 0)] * len(terms)
        return [idf(t.with_terms, t.df.get(term, 0)) for term in terms]

    def sparse_search(
        self, tenant: str, query: SparseVector, limit: int, allow: Allow | None = None
    ) -> list[Hit]:
        t = self._tenants.get(tenant)
        if t is None or not t.rows or not query.indices:
            return []
        scores = np.zeros(len(t.ids), dtype=np.float64)
        matched = np.zeros(len(t.ids), dtype=bool)
        for term, qvalue, weight in zip(
            query.indices, query.values, self.idfs(tenant, query.indices), strict=True
        ):
            found = t.posting(term)
            if found is None:
                continue
            rows, values = found
            np.add.at(scores, rows, weight * qvalue * values.astype(np.float64))
            matched[rows] = True
        return self._top(t, scores, matched & self._mask(t, allow), limit)

    @staticmethod
    def rrf(lists: Sequence[list[Hit]], limit: int) -> list[Hit]:
        """Qdrant's Fusion.RRF (stores/fusion.py)."""
        return _fused(fusion.rrf, lists, limit)

    @staticmethod
    def dbsf(lists: Sequence[list[Hit]], limit: int) -> list[Hit]:
        """Qdrant's Fusion.DBSF (stores/fusion.py)."""
        return _fused(fusion.dbsf, lists, limit)

    # -- internals -------------------------------------------------------------------------------------

    @staticmethod
    def _top(t: _Tenant, scores: npt.NDArray[Any], valid: npt.NDArray[np.bool_], limit: int) -> list[Hit]:
        candidates = np.flatnonzero(valid)
        if candidates.size == 0 or limit <= 0:
            return []
        picked = scores[candidates]
        if candidates.size > limit:
            keep = np.argpartition(-picked, limit - 1)[:limit]
            candidates, picked = candidates[keep], picked[keep]
        order = np.lexsort((candidates, -picked))  # score descending, then insertion order
        return [Hit(t.ids[r], float(scores[r]), t.payloads[r]) for r in candidates[order]]

    def _compact(self, t: _Tenant) -> None:
        keep = [row for row in range(len(t.ids)) if t.alive[row]]
        t.dense = np.concatenate([t.dense[keep], np.zeros((max(16, len(keep)), self.dims), dtype=np.float32)])
        t.ids = [t.ids[r] for r in keep]
        t.payloads = [t.payloads[r] for r in keep]
        t.sparse = [t.sparse[r] for r in keep]
        t.alive = [True] * len(keep)
        t.rows = {pid: row for row, pid in enumerate(t.ids)}
        t.plists, t.parrays, t.masks = {}, {}, {}
        for row, terms in enumerate(t.sparse):
            if terms is not None:
                t.add_terms(row, terms)


def _fused(
    fuse: Callable[[Sequence[fusion.Hits], int], list[tuple[str, float]]],
    lists: Sequence[list[Hit]],
    limit: int,
) -> list[Hit]:
    """`fuse` over the lists' (id, score) pairs, each fused hit with the payload of its first appearance."""
    first: dict[str, Hit] = {}
    for hits in lists:
        for hit in hits:
            first.setdefault(hit.point_id, hit)
    fused = fuse([[(h.point_id, h.score) for h in hits] for hits in lists], limit)
    return [Hit(pid, score, first[pid].payload) for pid, score in fused]
