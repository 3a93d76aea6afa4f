"""Retrieval confidence: is the best passage close enough to the question to answer from it?

    check = ConfidenceCheck(store=..., embedder=..., settings=retrieval)
    if not await check.passes(tenant, queries, question, where=...): ...  # "the documents don't cover it"

The signals come from one dense search (per probe: the raw question and a rewritten follow-up) against the
chunks the answer may use (the tenant's, filtered by `where`), whatever the search mode: the top cosine
between the question's dense vector and any chunk, and its gap over the 20th best cosine. Hybrid fusion
scores (RRF ranks), BM25 scores and reranker scores are not comparable across questions; cosines are, for
one embedder. Cost: that search with limit 20 (1 without a gap rule); in sparse mode the question is also
embedded densely for it.

The rule (Calibration) is per embedder, fitted on data by scripts/calibrate_refusal.py (answerable guide,
generated-corpus and SciFact questions vs questions none of them covers; the fit in eval/refusal.py) and
recorded in CALIBRATIONS with what it measured. A low cosine alone cannot serve a small corpus and a big one
at once: paraphrased questions about the 6-page guide top out at 0.22-0.30, while off-topic questions
against 10k SciFact chunks reach 0.34 by chance. The gap tells those apart in the big corpus (a flat field
of near-equal weak matches) without refusing the small one's answers. An embedder without a calibration
(API embedders: the test fakes cannot calibrate them) never refuses on confidence unless
CHATBOT_RETRIEVAL__REFUSAL_THRESHOLD sets a threshold (then the cosine alone decides).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from chatbot.providers.base import Embedder
from chatbot.settings import RetrievalSettings
from chatbot.stores.base import MetadataFilter, QueryVectors, ScoredChunk, VectorStore


@dataclass(frozen=True, slots=True)
class Calibration:
    """A refusal rule on the top dense cosine, and what it gave on the calibration data.

    Refused: a top cosine below `threshold`; or below `ceiling` while it stands less than `min_gap` above the
    `gap_rank`-th best cosine (a flat field of weak matches, what a big corpus gives a question it does not
    answer; a question it answers peaks over the rest). `ceiling` None: the cosine alone."""

    threshold: float
    refusal_rate: float  # share of unanswerable questions refused
    false_refusal_rate: float  # share of answerable questions refused
    data: str  # what it was fitted on
    ceiling: float | None = None
    min_gap: float = 0.0
    gap_rank: int = 20


@dataclass(frozen=True, slots=True)
class Signals:
    """One question's confidence signals: its best dense match, the top cosine, and how far that stands above
    the `gap_rank`-th best cosine (None with fewer matches than that)."""

    top: ScoredChunk | None
    score: float | None
    gap: float | None


CALIBRATION_COMMAND = (
    "PYTHONPATH=. python scripts/calibrate_refusal.py --scifact-store <eval store>/scifact --ceiling 0.35"
)
CALIBRATIONS: dict[str, Calibration] = {
    # `CALIBRATION_COMMAND`, 2026-12-07, false refusals <= 5% of each answerable set, fitted on those only
    # (the threshold, then min_gap under the chosen ceiling). Answerable: 59 docs/guide questions (20
    # hand-written + 39 paraphrased pairs of tests/fixtures/answer_pairs.jsonl; 2 refused, 3.4%), the 10
    # generated-corpus pairs (0) and SciFact's 809 train claims on the whole corpus (5,183 abstracts; 8
    # refused, 1.0%). Unanswerable: docs/guide out-of-scope 80% refused (16/20), SciFact off-topic 83.3%
    # (25/30), near-topic 26.7% (4/15). The cosine alone at 0.238: 80%, 33.3%, 0%. The old 0.293 (fitted on
    # the 20 hand-written guide questions only) refused 10.2% of the guide questions, 10% of the corpus ones
    # (off-topic SciFact 80%, near-topic 6.7%). min_gap sits at one guide question's gap (0.110; the next is
    # 0.156): refitted on random halves, the held-out guide false refusals ranged 0-16.7%.
    "local/all-MiniLM-L6-v2-int8": Calibration(
        threshold=0.238,
        refusal_rate=0.692,
        false_refusal_rate=0.011,
        data="docs/guide + generated corpus + SciFact train claims vs scripts/calibration/questions.jsonl",
        ceiling=0.35,
        min_gap=0.11,
        gap_rank=20,
    ),
}
"""Embedder name -> its calibration, as printed by CALIBRATION_COMMAND."""


def calibration_for(embedder: str, settings: RetrievalSettings) -> Calibration | None:
    """The refusal rule in effect: a threshold setting alone when given (the cosine alone; 0 turns refusals
    off), else the embedder's calibration, else None (no calibration: never refuse on confidence)."""
    if settings.refusal_threshold is not None:
        if settings.refusal_threshold <= 0:
            return None
        return Calibration(settings.refusal_threshold, 0.0, 0.0, "CHATBOT_RETRIEVAL__REFUSAL_THRESHOLD")
    return CALIBRATIONS.get(embedder)


def threshold_for(embedder: str, settings: RetrievalSettings) -> float | None:
    """The cosine threshold in effect (see calibration_for), None when refusals are off."""
    calibration = calibration_for(embedder, settings)
    return calibration.threshold if calibration is not None else None


def confident(score: float | None, threshold: float | None) -> bool:
    """Answer from the sources unless a threshold is set and the top cosine is below it (no score: nothing
    matched the search, so there is nothing to refuse on confidence)."""
    return threshold is None or score is None or score >= threshold


def refuses(calibration: Calibration, signals: Signals) -> bool:
    """The calibration's rule (see Calibration) on one question's signals."""
    if not confident(signals.score, calibration.threshold):
        return True
    flat = signals.gap is not None and signals.gap < calibration.min_gap
    return (
        calibration.ceiling is not None
        and signals.score is not None
        and signals.score < calibration.ceiling
        and flat
    )


class ConfidenceCheck:
    """The top dense cosine of a question against a tenant's chunks (see the module docstring)."""

    def __init__(self, *, store: VectorStore, embedder: Embedder, settings: RetrievalSettings) -> None:
        self.store = store
        self.embedder = embedder
        self.calibration = calibration_for(embedder.name, settings)
        self.threshold = self.calibration.threshold if self.calibration is not None else None

    @property
    def enabled(self) -> bool:
        return self.calibration is not None

    async def signals(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        question: str,
        *,
        where: MetadataFilter | None = None,
        gap_rank: int | None = None,
    ) -> Signals:
        """The signals of the query vector whose top cosine is best (the question embedded when no query has
        a dense vector); the gap needs `gap_rank` matches (default: the calibration's, when it uses one)."""
        if gap_rank is None:
            rule = self.calibration
            gap_rank = rule.gap_rank if rule is not None and rule.ceiling is not None else 1
        vectors = [q.dense for q in queries if q.dense is not None]
        if not vectors:
            vectors = [(await self.embedder.embed([question], "query"))[0]]
        found = await asyncio.gather(
            *(
                self.store.search(tenant, [QueryVectors(dense=v)], mode="dense", limit=gap_rank, where=where)
                for v in vectors
            )
        )
        hits = max((h for h in found if h), key=lambda h: h[0].score, default=None)
        if hits is None:
            return Signals(None, None, None)
        gap = hits[0].score - hits[gap_rank - 1].score if gap_rank > 1 and len(hits) >= gap_rank else None
        return Signals(hits[0], hits[0].score, gap)

    async def top_similarity(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        question: str,
        *,
        where: MetadataFilter | None = None,
    ) -> float | None:
        """The best cosine over the queries' dense vectors, None when no chunk matches."""
        return (await self.signals(tenant, queries, question, where=where, gap_rank=1)).score

    async def passes(
        self,
        tenant: str,
        queries: Sequence[QueryVectors],
        question: str,
        *,
        where: MetadataFilter | None = None,
    ) -> bool:
        """True when the sources may be used: no calibration, or its rule does not refuse."""
        if self.calibration is None:
            return True
        return not refuses(self.calibration, await self.signals(tenant, queries, question, where=where))
