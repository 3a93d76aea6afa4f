"""Read a feedback export (`python -m chatbot feedback export`) back as a regression set.

Each JSONL line is one rating of one answer: question, answer, sources, rating (up/down), comment, reasons.
An answer rated up is a case the product must keep answering from the same documents; one rated down is a
case to fix. `judgements()` turns the set into BEIR-style queries and qrels (by document source) so the
harness's metrics (eval/metrics.py) score a retrieval run against what users confirmed:

    cases = read_feedback(Path("feedback.jsonl"))
    queries, qrels = judgements(cases)   # only answers rated up, their cited sources relevant (1)

Lines that are not a rating (blank, or JSON without question/rating) are refused with the line number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbot.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RegressionCase:
    message_id: str
    tenant: str
    question: str
    answer: str
    sources: tuple[str, ...]  # the cited documents' sources (file names), in citation order
    rating: str  # "up" or "down"
    comment: str = ""
    reasons: tuple[str, ...] = ()

    @property
    def good(self) -> bool:
        return self.rating == "up"


def read_feedback(path: Path) -> list[RegressionCase]:
    with path.open(encoding="utf-8") as f:
        return parse_feedback(f)


def parse_feedback(lines: Iterable[str]) -> list[RegressionCase]:
    cases: list[RegressionCase] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            cases.append(_case(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"feedback line {number} is not a rating: {type(exc).__name__}") from None
    return cases


def _case(row: Any) -> RegressionCase:
    if not isinstance(row, dict):
        raise TypeError("not an object")
    rating = row["rating"]
    if rating not in ("up", "down"):
        raise ValueError("rating")
    sources = tuple(dict.fromkeys(str(s["source"]) for s in row.get("sources") or () if s.get("source")))
    return RegressionCase(
        message_id=str(row.get("message_id", "")),
        tenant=str(row.get("tenant", "")),
        question=str(row["question"]),
        answer=str(row.get("answer", "")),
        sources=sources,
        rating=rating,
        comment=str(row.get("comment") or ""),
        reasons=tuple(str(r) for r in row.get("reasons") or ()),
    )


def judgements(cases: Sequence[RegressionCase]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(queries, qrels) of the answers rated up that cited sources: each cited source is relevant (1).
    A question rated up several times is one query (its sources merged)."""
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    ids: dict[str, str] = {}
    for case in cases:
        if not case.good or not case.sources:
            continue
        qid = ids.setdefault(case.question, f"fb{len(ids) + 1}")
        queries[qid] = case.question
        qrels.setdefault(qid, {}).update(dict.fromkeys(case.sources, 1))
    return queries, qrels
