"""Feedback records: an answered turn as the user saw it, a user's rating of it, and the fixed reason codes
a rating may carry. The FeedbackStore Protocol (stores/base.py) stores them; api/ and chat/ read and write
their dict forms."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Rating = Literal["up", "down"]
FEEDBACK_REASONS: tuple[str, ...] = (
    "incorrect",
    "incomplete",
    "irrelevant_sources",
    "missing_sources",
    "outdated",
    "too_long",
    "unsafe",
    "other",
)
"""The reason codes a rating may carry (a fixed enum: label values and exports stay bounded)."""


@dataclass(frozen=True, slots=True)
class AnsweredTurn:
    """What a rating is about: the question, the answer as the user saw it and its sources (wire form)."""

    tenant: str
    message_id: str
    question: str
    answer: str
    sources: tuple[dict[str, Any], ...] = ()
    model: str = ""
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "message_id": self.message_id,
            "question": self.question,
            "answer": self.answer,
            "sources": list(self.sources),
            "model": self.model,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnsweredTurn:
        return cls(
            tenant=str(data["tenant"]),
            message_id=str(data["message_id"]),
            question=str(data["question"]),
            answer=str(data["answer"]),
            sources=tuple(data.get("sources") or ()),
            model=str(data.get("model", "")),
            created=float(data.get("created", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Feedback:
    """One user's rating of one answer; a later rating by the same user replaces it."""

    message_id: str
    user: str
    rating: Rating
    comment: str = ""
    reasons: tuple[str, ...] = ()
    created: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "user": self.user,
            "rating": self.rating,
            "comment": self.comment,
            "reasons": list(self.reasons),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feedback:
        rating = data["rating"]
        if rating not in ("up", "down"):
            raise ValueError(f"unknown rating {rating!r}")
        return cls(
            message_id=str(data["message_id"]),
            user=str(data["user"]),
            rating=rating,
            comment=str(data.get("comment", "")),
            reasons=tuple(data.get("reasons") or ()),
            created=float(data.get("created", 0.0)),
        )
