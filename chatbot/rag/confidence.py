"""Retrieval confidence: is the best passage close enough to the question to answer from it?

    check = ConfidenceCheck(store=..., embedder=..., settings=retrieval)
    score, threshold = await check.measure(tenant, queries, question, where=...)
    if not confident(score, threshold): ...  # answer "the documents don't cover it", cite nothing

The signal is the top dense cosine: the best cosine similarity between the question's dense vector and
any chunk the search may return (the tenant's, filtered by `where`), whatever the search mode. Hybrid
fusion scores (RRF ranks), BM25 scores and reranker scores are not comparable across questions; the cosine
is, for one embedder. It costs one extra dense search with limit 1 (one per probe: the raw question and a
rewritten follow-up); in sparse mode the question is also embedded densely for it.

The threshold is per embedder, fitted on data by scripts/calibrate_refusal.py (answerable SciFact train
claims and guide questions vs questions neither corpus covers; the rule is in that script) and recorded in
CALIBRATIONS with what it measured. An embedder without a calibration (API embedders: the test fakes cannot
calibrate them) never refuses on confidence unless CHATBOT_RETRIEVAL__REFUSAL_THRESHOLD sets a threshold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from chatbot.providers.base import Embedder
from chatbot.settings import RetrievalSettings
from chatbot.stores.base import MetadataFilter, QueryVectors, VectorStore


@dataclass(frozen=True, slots=True)
class Calibration:
    """A refusal threshold on the top dense cosine, and what it gave on the calibration data."""

    threshold: float
    refusal_rate: float  # share of unanswerable questions refused
    false_refusal_rate: float  # share of answerable questions refused
    data: str  # what it was fitted on


CALIBRATION_COMMAND = "PYTHONPATH=. python scripts/calibrate_refusal.py"
CALIBRATIONS: dict[str, Calibration] = {
    # `CALIBRATION_COMMAND --other-docs 1500`, 2026-12-07: SciFact's 809 train claims answerable (0 refused; the
    # lowest 1% score 0.338) and 45 questions it does not answer (30 off-topic: 90% refused; 15 near-topic,
    # medical but not research: 6.7%), on the claims' 565 relevant documents and 1,500 seeded others (a
    # smaller corpus only lowers top cosines, so the threshold errs towards answering); docs/guide: 20
    # in-scope (1 refused: "How do I start the server for the first time?", 0.223) and 20 out-of-scope
    # questions (90% refused). Fitted on the answerable sets only: <= 5% refused in each.
    "local/all-MiniLM-L6-v2-int8": Calibration(
        threshold=0.293,
        refusal_rate=0.708,
        false_refusal_rate=0.001,
        data="SciFact train claims + docs/guide vs scripts/calibration/questions.jsonl",
    ),
}
"""Embedder name -> its calibration, as printed by CALIBRATION_COMMAND."""


def threshold_for(embedder: str, settings: RetrievalSettings) -> float | None:
    """The refusal threshold in effect: the setting when given (0 turns refusals off), else the embedder's
    calibration, else None (no calibration: never refuse on confidence)."""
    if settings.refusal_threshold is not None:
        return settings.refusal_threshold if settings.refusal_threshold > 0 else None
    calibration = CALIBRATIONS.get(embedder)
    return calibration.threshold if calibration is not None else None


def confident(score: float | None, threshold: float | None) -> bool:
    """Answer from the sources unless a threshold is set and the top cosine is below it (no score: nothing
    matched the search, so there is nothing to refuse on confidence)."""
    return threshold is None or score is None or score >= threshold


class ConfidenceCheck:
    """The top dense cosine of a question against a tenant's chunks (see the module docstring)."""

    def __init__(self, *, store: VectorStore, embedder: Embedder, settings: RetrievalSettings) -> None:
        self.store = store
        self.embedder = embedder
        self.threshold = threshold_for(embedder.name, settings)

    @property
    def enabled(self) -> bool:
        return self.threshold is not None

    async def top_similarity(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        question: str,
        *,
        where: MetadataFilter | None = None,
    ) -> float | None:
        """The best cosine over the queries' dense vectors (the question embedded when none has one), None
        when no chunk matches."""
        vectors = [q.dense for q in queries if q.dense is not None]
        if not vectors:
            vectors = [(await self.embedder.embed([question], "query"))[0]]
        hits = await asyncio.gather(
            *(
                self.store.search(tenant, [QueryVectors(dense=v)], mode="dense", limit=1, where=where)
                for v in vectors
            )
        )
        scores = [found[0].score for found in hits if found]
        return max(scores) if scores else None

    async def passes(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        question: str,
        *,
        where: MetadataFilter | None = None,
    ) -> bool:
        """True when the sources may be used: no threshold, or the top cosine reaches it."""
        if self.threshold is None:
            return True
        score = await self.top_similarity(tenant, queries, question, where=where)
        return confident(score, self.threshold)
