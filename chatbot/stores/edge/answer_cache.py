"""EdgeAnswerCache: the semantic answer cache on Qdrant Edge, a second shard (`<collection>_answers`) next to
the chunks. The same entries, scoping and invalidation as stores/qdrant/answer_cache.py (protocol and
semantics: stores.base.AnswerCache): an answer is found only for its tenant, generation and variant, within
its time to live, for a question at least `similarity` close; invalidate() starts a new generation and drops
the tenant's entries. One process holds an embedded store, so this cache is that process's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import qdrant_edge as edge

from chatbot.stores.answer_entries import cached_answer, entry_id, entry_payload, generation_id
from chatbot.stores.base import ScoredChunk
from chatbot.stores.edge.conditions import DENSE, tenant_filter
from chatbot.stores.edge.store import EdgeStore
from chatbot.stores.records import CachedAnswer


class EdgeAnswerCache:
    def __init__(self, store: EdgeStore, *, similarity: float, ttl_seconds: float) -> None:
        self.store = store
        self.collection = f"{store.collection}_answers"
        self.similarity = similarity
        self.ttl_seconds = ttl_seconds
        self.shard: edge.EdgeShard | None = None
        self.dimensions = 0

    async def open(self, dimensions: int) -> None:
        self.dimensions = dimensions
        config = edge.EdgeConfig(
            vectors={DENSE: edge.EdgeVectorParams(size=dimensions, distance=edge.Distance.Cosine)}
        )
        self.shard = await self.store.open_shard(self.collection, config, indexes=("generation", "variant"))

    def _shard(self) -> edge.EdgeShard:
        if self.shard is None:
            raise RuntimeError("EdgeAnswerCache.open() was not awaited")
        return self.shard

    async def generation(self, tenant: str) -> str:
        shard = self._shard()
        found = await self.store.worker.call(lambda: shard.retrieve([generation_id(tenant)], True, False))
        return str((found[0].payload or {}).get("generation", "0")) if found else "0"

    async def lookup(
        self, tenant: str, generation: str, variant: str, vector: Sequence[float]
    ) -> CachedAnswer | None:
        shard = self._shard()
        flt = tenant_filter(
            tenant,
            extra=[
                edge.FieldCondition(key="generation", match=edge.MatchValue(generation)),
                edge.FieldCondition(key="variant", match=edge.MatchValue(variant)),
                edge.FieldCondition(key="created", range=edge.RangeFloat(gte=time.time() - self.ttl_seconds)),
            ],
        )
        request = edge.QueryRequest(limit=1, query=edge.Query.Nearest(list(vector), using=DENSE), filter=flt,
                                    score_threshold=self.similarity, with_payload=True)  # fmt: skip
        points = await self.store.worker.call(lambda: shard.query(request))
        if not points:
            return None
        return cached_answer(points[0].payload or {}, points[0].score)

    async def store_answer(
        self,
        tenant: str,
        generation: str,
        variant: str,
        vector: Sequence[float],
        *,
        question: str,
        answer: str,
        sources: Sequence[ScoredChunk],
        model: str,
    ) -> None:
        shard = self._shard()
        pid = entry_id(tenant, generation, variant, question)
        payload = entry_payload(
            tenant, generation, variant, question=question, answer=answer, sources=sources, model=model
        )
        point = edge.Point(pid, {DENSE: list(vector)}, payload)
        await self.store.worker.call(lambda: shard.update(edge.UpdateOperation.upsert_points([point])))

    async def invalidate(self, tenant: str) -> None:
        """A tenant's documents changed: a new generation, and its old entries are dropped."""
        shard = self._shard()
        marker = edge.Point(
            generation_id(tenant),
            {DENSE: [1.0] + [0.0] * (self.dimensions - 1)},
            {"tenant": "\x00marker", "generation": uuid.uuid4().hex},  # never matches a tenant filter
        )
        drop = edge.UpdateOperation.delete_points_by_filter(tenant_filter(tenant))
        await self.store.worker.call(lambda: shard.update(edge.UpdateOperation.upsert_points([marker])))
        await self.store.worker.call(lambda: shard.update(drop))
