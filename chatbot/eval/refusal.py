"""Calibrating the refusal threshold (rag/confidence.py) on data: answerable vs unanswerable questions.

    scores = await top_similarities(check, tenant, questions)   # the top dense cosine of each question
    threshold = fit_threshold(answerable_sets, max_false_refusal=0.05)
    rates(threshold, answerable, unanswerable)

The rule: the highest threshold that refuses at most `max_false_refusal` of the answerable questions of
EVERY data set (SciFact train claims, the guide's in-scope questions), i.e. the smallest per-set quantile
of the answerable scores. It never looks at the unanswerable scores, so their refusal rate is measured,
not fitted. scripts/calibrate_refusal.py runs it and prints the CALIBRATIONS entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


async def top_similarities(check: ConfidenceCheck, tenant: str, questions: Sequence[str]) -> list[float]:
    """The top dense cosine of each question (0.0 when nothing is stored for the tenant)."""
    scores: list[float] = []
    for question in questions:
        score = await check.top_similarity(tenant, [], question)
        scores.append(0.0 if score is None else score)
    return scores
