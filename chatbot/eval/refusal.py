"""Calibrating the refusal threshold (rag/confidence.py) on data: answerable vs unanswerable questions.

    probes = await probe_questions(check, sparse, tenant, questions, gap_rank=20)  # cosine, gap, coverage
    threshold = fit_threshold({name: [p.cosine for p in ps] ...}, max_false_refusal=0.05)
    rates(threshold, answerable, unanswerable)
    min_gap = fit_minimum({name: [(p.cosine, p.gap) for p in ps] ...}, floor=threshold, ceiling=0.35, ...)

The rule: the highest threshold that refuses at most `max_false_refusal` of the answerable questions of
EVERY data set (SciFact train claims, the guide's and the generated corpus's questions), i.e. the
smallest per-set quantile of the answerable scores. It never looks at the unanswerable scores, so their
refusal rate is measured, not fitted. scripts/calibrate_refusal.py runs it and prints the CALIBRATIONS entry.

The second signal (band_refused): between the threshold and a chosen ceiling, refuse when the top cosine
stands less than a minimum gap above the 20th best (kept), or when too few of the question's BM25 terms
occur in the top chunk (tried, not kept); the minimum is fitted by the same rule (fit_minimum), and the
script prints both next to the cosine alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chatbot.providers.base import SparseEmbedder, SparseVector
from chatbot.rag.confidence import ConfidenceCheck


@dataclass(frozen=True, slots=True)
class Rates:
    """What a threshold does on one data set."""

    threshold: float
    refusal_rate: float  # unanswerable questions refused (higher is better)
    false_refusal_rate: float  # answerable questions refused (lower is better)
    answerable: int
    unanswerable: int


def refused(score: float | None, threshold: float) -> bool:
    """The pipeline's decision (confidence.confident), inverted: refused when the top cosine is below it."""
    return score is not None and score < threshold


def rates(threshold: float, answerable: Sequence[float], unanswerable: Sequence[float]) -> Rates:
    """Refusal rate on the unanswerable scores and false-refusal rate on the answerable ones."""
    return Rates(
        threshold=threshold,
        refusal_rate=_share(unanswerable, threshold),
        false_refusal_rate=_share(answerable, threshold),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
    )


def _share(scores: Sequence[float], threshold: float) -> float:
    return sum(refused(s, threshold) for s in scores) / len(scores) if scores else 0.0


def fit_threshold(answerable: Mapping[str, Sequence[float]], *, max_false_refusal: float) -> float:
    """The highest threshold (3 decimals, rounded down) refusing at most `max_false_refusal` of every set's
    answerable scores."""
    candidates: list[float] = []
    for name, scores in answerable.items():
        if not scores:
            raise ValueError(f"no answerable scores for {name}")
        ordered = sorted(scores)
        allowed = math.floor(max_false_refusal * len(ordered))  # this many may fall below the threshold
        candidates.append(ordered[allowed])
    return math.floor(min(candidates) * 1000) / 1000


@dataclass(frozen=True, slots=True)
class Probe:
    """One question's confidence signals (rag/confidence.py Signals) and the share of its BM25 terms that
    occur in the top chunk (0..1, comparable across questions, unlike a BM25 score)."""

    cosine: float
    gap: float | None
    coverage: float


def term_coverage(query: SparseVector, chunk: SparseVector) -> float:
    """The share of the query's terms (BM25 analysis: stems, no stopwords) present in the chunk."""
    terms = set(query.indices)
    return len(terms.intersection(chunk.indices)) / len(terms) if terms else 0.0


def band_refused(cosine: float, signal: float | None, floor: float, ceiling: float, minimum: float) -> bool:
    """A two-signal rule: refuse below `floor`, and between `floor` and `ceiling` when the second signal
    (the gap, or the term coverage) is below `minimum` (no signal: not refused on it)."""
    return cosine < floor or (cosine < ceiling and signal is not None and signal < minimum)


def fit_minimum(
    answerable: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    floor: float,
    ceiling: float,
    max_false_refusal: float,
) -> float:
    """The highest minimum of the second signal (3 decimals, rounded down) keeping every set's false
    refusals under band_refused at most `max_false_refusal`; 0.0 (the rule off) when none does."""
    candidates = sorted(
        {math.floor(s * 1000) / 1000 for pairs in answerable.values() for _, s in pairs if s is not None}
        | {0.0}
    )
    best = 0.0
    for minimum in candidates:
        within = all(
            sum(band_refused(c, s, floor, ceiling, minimum) for c, s in pairs)
            <= math.floor(max_false_refusal * len(pairs))
            for pairs in answerable.values()
        )
        if not within:
            break
        best = minimum
    return best


async def probe_questions(
    check: ConfidenceCheck, sparse: SparseEmbedder, tenant: str, questions: Sequence[str], *, gap_rank: int
) -> list[Probe]:
    """Each question's Probe (all 0.0 when nothing is stored for the tenant)."""
    probes: list[Probe] = []
    for question in questions:
        signals = await check.signals(tenant, [], question, gap_rank=gap_rank)
        if signals.top is None:
            probes.append(Probe(0.0, None, 0.0))
            continue
        (query,) = await sparse.embed_sparse([question], "query")
        (chunk,) = await sparse.embed_sparse([signals.top.text], "document")
        probes.append(Probe(signals.top.score, signals.gap, term_coverage(query, chunk)))
    return probes
