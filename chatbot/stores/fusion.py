"""Fusing the hit lists of several probes (RRF, DBSF) with qdrant-client's formulas (qdrant_client.hybrid.fusion):
the same scores and the same order, ties in order of first appearance. The one implementation for the numpy
mirror (qdrant/local_index.py) and Qdrant Edge (edge/store.py). Edge fuses in Rust too, but orders tied points
by where they sit in its segments, which another tenant's writes can change; fusing a few dozen hits here costs
microseconds and keeps every engine's answers identical."""

from __future__ import annotations

from collections.abc import Sequence

Hits = Sequence[tuple[str, float]]  # (point id, score), best first
RRF_K = 2  # Qdrant's default ranking constant


def rrf(lists: Sequence[Hits], limit: int) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: the sum of 1 / (rank + 2) over the lists (0-based ranks)."""
    scores: dict[str, float] = {}
    for hits in lists:
        for rank, (pid, _) in enumerate(hits):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (rank + RRF_K)
    return sorted(scores.items(), key=lambda item: -item[1])[:limit]


def dbsf(lists: Sequence[Hits], limit: int) -> list[tuple[str, float]]:
    """Distribution-based score fusion: each list's scores scaled by mean +- 3 standard deviations to 0..1
    (one hit, or all equal: 0.5), summed per point."""
    scores: dict[str, float] = {}
    for hits in lists:
        for pid, score in _normalised(hits):
            scores[pid] = scores.get(pid, 0.0) + score
    return sorted(scores.items(), key=lambda item: -item[1])[:limit]


def _normalised(hits: Hits) -> list[tuple[str, float]]:
    """One list's scores on [0, 1]: (score - low) / (high - low) with low/high = mean -+ 3 sample std (a probe
    that found nothing adds nothing, as qdrant-client skips it)."""
    if len(hits) <= 1:
        return [(pid, 0.5) for pid, _ in hits]
    mean = sum(s for _, s in hits) / len(hits)
    variance = sum((s - mean) ** 2 for _, s in hits) / (len(hits) - 1)
    if variance == 0:
        return [(pid, 0.5) for pid, _ in hits]
    std = variance**0.5
    low, high = mean - 3 * std, mean + 3 * std
    return [(pid, (s - low) / (high - low)) for pid, s in hits]
