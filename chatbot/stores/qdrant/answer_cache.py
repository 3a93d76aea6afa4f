"""Semantic answer cache in Qdrant (a second collection, `<collection>_answers`), so every instance shares it.

An entry is a finished answer (text, sources, model) under its question's dense vector, scoped to a tenant and
to that tenant's *generation*: ingest and delete bump the generation (and drop the tenant's entries), so an
answer computed before a change can never be served after it, even if it is stored late. A question close
enough (cosine >= cache.similarity) to a cached one of the same tenant and generation is answered from the
cache. Like retrieval.py, this is vector-store code: it is the only other module that sees qdrant types.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from qdrant_client import models

from chatbot.rag.events import Source
from chatbot.stores.qdrant.store import DENSE, POINT_NAMESPACE, VectorStore, tenant_filter


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    question: str
    answer: str
    sources: tuple[Source, ...]
    model: str
    score: float


class AnswerCache:
    def __init__(self, store: VectorStore, *, similarity: float, ttl_seconds: float) -> None:
        self.store = store
        self.collection = f"{store.collection}_answers"
        self.similarity = similarity
        self.ttl_seconds = ttl_seconds

    async def open(self, dimensions: int) -> None:
        client = self.store.client
        if not await self.store._call(client.collection_exists(self.collection)):
            await self.store._call(
                client.create_collection(
                    self.collection,
                    vectors_config={
                        DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)
                    },
                    metadata={"dense_model": self.store.dense_model, "purpose": "answer cache"},
                )
            )

    async def generation(self, tenant: str) -> str:
        found = await self.store._call(
            self.store.client.retrieve(self.collection, ids=[_generation_id(tenant)], with_payload=True)
        )
        return str((found[0].payload or {}).get("generation", "0")) if found else "0"

    async def lookup(self, tenant: str, generation: str, vector: Sequence[float]) -> CachedAnswer | None:
        flt = tenant_filter(
            tenant,
            extra=models.Filter(
                must=[
                    models.FieldCondition(key="generation", match=models.MatchValue(value=generation)),
                    models.FieldCondition(
                        key="created", range=models.Range(gte=time.time() - self.ttl_seconds)
                    ),
                ]
            ),
        )
        response = await self.store._call(
            self.store.client.query_points(
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
        pl = point.payload or {}
        return CachedAnswer(
            question=str(pl.get("question", "")),
            answer=str(pl.get("answer", "")),
            sources=tuple(Source.from_dict(s) for s in pl.get("sources", [])),
            model=str(pl.get("model", "")),
            score=float(point.score),
        )

    async def store_answer(
        self,
        tenant: str,
        generation: str,
        vector: Sequence[float],
        *,
        question: str,
        answer: str,
        sources: Sequence[Source],
        model: str,
    ) -> None:
        point = models.PointStruct(
            id=str(uuid.uuid5(POINT_NAMESPACE, f"answer\x00{tenant}\x00{generation}\x00{question}")),
            vector={DENSE: list(vector)},
            payload={
                "tenant": tenant,
                "generation": generation,
                "question": question,
                "answer": answer,
                "sources": [s.to_dict() for s in sources],
                "model": model,
                "created": time.time(),
            },
        )
        await self.store._call(self.store.client.upsert(self.collection, points=[point], wait=True))

    async def invalidate(self, tenant: str) -> None:
        """A tenant's documents changed: a new generation, and its old entries are dropped."""
        marker = models.PointStruct(
            id=_generation_id(tenant),
            vector={DENSE: [1.0] + [0.0] * (self.store.dimensions - 1)},
            payload={"tenant": "\x00marker", "generation": uuid.uuid4().hex},  # never matches a tenant filter
        )
        client = self.store.client
        await self.store._call(client.upsert(self.collection, points=[marker], wait=True))
        await self.store._call(
            client.delete(
                self.collection, points_selector=models.FilterSelector(filter=tenant_filter(tenant))
            )
        )


def _generation_id(tenant: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"generation\x00{tenant}"))
