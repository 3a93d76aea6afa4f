"""Retrieval metrics as BEIR computes them (pytrec_eval): nDCG@10 with linear gains, Recall@100 and MRR@10,
averaged over the queries that have at least one relevant document in the qrels; latency percentiles by
nearest rank. Pure functions."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NDCG_K = 10
RECALL_K = 100
MRR_K = 10
SPLITS = ("dev", "test")  # halves of the judged queries, by query id (split_of)


def split_of(query_id: str) -> str:
    """`dev` or `test`, from the first byte of the id's SHA-256: a fixed, ~50/50 split that does not depend
    on the file's order or on which queries are evaluated. Tune on dev, confirm on test."""
    return SPLITS[hashlib.sha256(query_id.encode()).digest()[0] & 1]


def unique(ranked: Iterable[str]) -> list[str]:
    """Ids in order, each kept at its first (best) rank: several chunks of one document count once."""
    return list(dict.fromkeys(ranked))


def rank_by_score(hits: Iterable[tuple[str, float]]) -> list[str]:
    """Document ids by best score, highest first; equal scores (common with RRF) by id, so a run does not
    depend on how the store orders ties."""
    best: dict[str, float] = {}
    for doc, score in hits:
        if doc not in best or score > best[doc]:
            best[doc] = score
    return sorted(best, key=lambda doc: (-best[doc], doc))


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = NDCG_K) -> float:
    """nDCG@k with linear gains (as pytrec_eval and BEIR): sum rel_i / log2(i + 1) over the ideal order's."""
    gains = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    if ideal == 0:
        return 0.0
    dcg = sum(max(relevance.get(doc, 0), 0) / math.log2(i + 2) for i, doc in enumerate(unique(ranked)[:k]))
    return dcg / ideal


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = RECALL_K) -> float:
    """The share of the relevant documents (grade > 0) found in the top k."""
    relevant = {doc for doc, g in relevance.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(unique(ranked)[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int = MRR_K) -> float:
    """1 / rank of the first relevant document in the top k, else 0."""
    for i, doc in enumerate(unique(ranked)[:k], start=1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / i
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class ModeResult:
    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    p50_ms: float
    p99_ms: float
    queries: int
    splits: dict[str, ModeResult] = field(default_factory=dict)  # the same run scored per split

    def to_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "ndcg@10": round(self.ndcg_at_10, 4),
            "recall@100": round(self.recall_at_100, 4),
            "mrr@10": round(self.mrr_at_10, 4),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "queries": self.queries,
        }
        if self.splits:
            figures["splits"] = {name: r.to_dict() for name, r in self.splits.items()}
        return figures


def score_run(
    mode: str,
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    latencies_ms: Sequence[float] | Mapping[str, float],
    *,
    splits: bool = False,
) -> ModeResult:
    """Mean metrics over the queries of `run` that have a relevant document; the others are not counted.
    With `splits`, also per split (split_of; latencies then per query id)."""
    judged = [q for q in run if any(g > 0 for g in qrels.get(q, {}).values())]
    n = len(judged)

    def mean(metric: Callable[[Sequence[str], Mapping[str, int]], float]) -> float:
        return sum(metric(run[q], qrels[q]) for q in judged) / n if n else 0.0

    latencies = list(latencies_ms.values()) if isinstance(latencies_ms, Mapping) else latencies_ms
    by_split: dict[str, ModeResult] = {}
    if splits:
        if not isinstance(latencies_ms, Mapping):
            raise TypeError("per-split scores need the latencies by query id")
        for name in SPLITS:
            part = {q: run[q] for q in run if split_of(q) == name}
            times = {q: latencies_ms[q] for q in part if q in latencies_ms}
            by_split[name] = score_run(mode, part, qrels, times)
    return ModeResult(
        mode=mode,
        ndcg_at_10=mean(ndcg_at_k),
        recall_at_100=mean(recall_at_k),
        mrr_at_10=mean(mrr_at_k),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        queries=n,
        splits=by_split,
    )
