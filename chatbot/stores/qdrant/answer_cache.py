"""QdrantAnswerCache: the semantic answer cache in Qdrant (a second collection, `<collection>_answers`), so every
instance shares it. Protocol and semantics: stores.base.AnswerCache.

An entry is a finished answer (text, sources, model) under its question's dense vector, scoped to a tenant,
to that tenant's *generation* and to its *variant* (the model, prompt templates and generation parameters it
was produced with: an answer at temperature 2 is never served to a default request). Ingest and delete bump
the generation (and drop the tenant's entries), so an answer computed before a change can never be served
after it, even if it is stored late. A question close enough (cosine >= cache.similarity) to a cached one of
the same tenant, generation and variant is answered from the cache. It works through the QdrantStore's public
`run` (the store's client, thread and error translation).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from qdrant_client import models

from chatbot.stores.answer_entries import cached_answer, entry_id, entry_payload, generation_id
from chatbot.stores.base import ScoredChunk
from chatbot.stores.qdrant.conditions import tenant_filter
from chatbot.stores.qdrant.points import DENSE
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.stores.records import CachedAnswer


class QdrantAnswerCache:
    def __init__(self, store: QdrantStore, *, similarity: float, ttl_seconds: float) -> None:
        self.store = store
        self.collection = f"{store.collection}_answers"
        self.similarity = similarity
        self.ttl_seconds = ttl_seconds

    async def open(self, dimensions: int) -> None:
        name = self.collection
        if not await self.store.run(lambda c: c.collection_exists(name)):
            vectors = {DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)}
            meta = {"dense_model": self.store.dense_model, "purpose": "answer cache"}
            await self.store.run(lambda c: c.create_collection(name, vectors_config=vectors, metadata=meta))

    async def generation(self, tenant: str) -> str:
        ids = [generation_id(tenant)]
        found = await self.store.run(lambda c: c.retrieve(self.collection, ids=ids, with_payload=True))
        return str((found[0].payload or {}).get("generation", "0")) if found else "0"

    async def lookup(
        self, tenant: str, generation: str, variant: str, vector: Sequence[float]
    ) -> CachedAnswer | None:
        flt = tenant_filter(
            tenant,
            extra=models.Filter(
                must=[
                    models.FieldCondition(key="generation", match=models.MatchValue(value=generation)),
                    models.FieldCondition(key="variant", match=models.MatchValue(value=variant)),
                    models.FieldCondition(
                        key="created", range=models.Range(gte=time.time() - self.ttl_seconds)
                    ),
                ]
            ),
        )
        response = await self.store.run(
            lambda c: c.query_points(
                self.collection,
                query=list(vector),
                using=DENSE,
                limit=1,
                score_threshold=self.similarity,
                query_filter=flt,
                with_payload=True,
            )
        )
        if not response.points:
            return None
        point = response.points[0]
        return cached_answer(point.payload or {}, point.score)

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
        payload = entry_payload(
            tenant, generation, variant, question=question, answer=answer, sources=sources, model=model
        )
        point = models.PointStruct(
            id=entry_id(tenant, generation, variant, question), vector={DENSE: list(vector)}, payload=payload
        )
        await self.store.run(lambda c: c.upsert(self.collection, points=[point], wait=True))

    async def invalidate(self, tenant: str) -> None:
        """A tenant's documents changed: a new generation, and its old entries are dropped."""
        marker = models.PointStruct(
            id=generation_id(tenant),
            vector={DENSE: [1.0] + [0.0] * (self.store.dimensions - 1)},
            payload={"tenant": "\x00marker", "generation": uuid.uuid4().hex},  # never matches a tenant filter
        )
        selector = models.FilterSelector(filter=tenant_filter(tenant))
        await self.store.run(lambda c: c.upsert(self.collection, points=[marker], wait=True))
        await self.store.run(lambda c: c.delete(self.collection, points_selector=selector))
