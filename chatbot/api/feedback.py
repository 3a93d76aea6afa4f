"""POST /v1/messages/<message_id>/feedback: a user's thumbs up or down on an answer. Transport only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint

from chatbot.api.context import caller, services
from chatbot.api.http import json_body
from chatbot.api.routes import route
from chatbot.api.wire import validate
from chatbot.chat.feedback import FeedbackService
from chatbot.errors import UnknownMessage
from chatbot.stores.feedback import FEEDBACK_REASONS

bp = Blueprint("feedback", __name__)

Reason = Literal[FEEDBACK_REASONS]  # type: ignore[valid-type]  # the enum is the tuple in stores/feedback.py
MAX_MESSAGE_ID = 128


class FeedbackBody(BaseModel):
    """POST /v1/messages/<message_id>/feedback"""

    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"] = Field(description="Thumbs up or down. Rating again replaces your rating.")
    comment: str | None = Field(
        None, max_length=20_000, description="Optional free text (feedback.max_comment_chars applies)."
    )
    reasons: list[Reason] = Field(
        default_factory=list, max_length=len(FEEDBACK_REASONS), description="Optional reason codes."
    )
    client_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="Tells apart the users behind one credential (the widget sends a random id per browser): "
        "one rating per credential and client_id.",
    )


class FeedbackResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_ID)]
    rating: Literal["up", "down"]
    replaced: bool = Field(description="True when it replaced this caller's earlier rating of the answer.")


def feedback_service() -> FeedbackService:
    found = services().feedback
    if found is None:
        raise RuntimeError("the services were built without feedback")
    return found


@route(
    bp,
    "POST",
    "/v1/messages/<message_id>/feedback",
    role="chat",
    body=FeedbackBody,
    response=FeedbackResult,
    errors=(404, 413, 422),
    summary="Rate an answer (up/down, optional comment and reason codes); one rating per caller, replaceable.",
)
async def rate_answer(message_id: str) -> Any:
    body = validate(FeedbackBody, await json_body())
    if len(message_id) > MAX_MESSAGE_ID:
        raise UnknownMessage()
    feedback, replaced = await feedback_service().rate(
        caller(),
        message_id,
        body.rating,
        comment=body.comment,
        reasons=list(body.reasons),
        client_id=body.client_id,
    )
    return {"message_id": message_id, "rating": feedback.rating, "replaced": replaced}
