"""Follow-up questions ("and how do I stop it?") need the conversation to be searchable.

`looks_like_followup` decides cheaply whether a rewrite is worth a model round trip: short messages, or
messages that lean on the conversation (pronouns, "and ...", "what about ..."). The offline fallback
rewrite prepends the previous user question, which restores the missing subject for retrieval; the raw
question is searched too and both are fused, so a wrong guess costs little.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from chatbot.providers.base import ChatMessage

_LEANING = re.compile(
    r"^(and|but|also|so|then|what about|how about|why|same)\b|\b(it|its|that|this|these|those|they|them|one|there)\b",
    re.IGNORECASE,
)
SHORT_WORDS = 6


def looks_like_followup(question: str) -> bool:
    words = question.split()
    return len(words) <= SHORT_WORDS or bool(_LEANING.search(question))


def fallback_rewrite(question: str, history: Sequence[ChatMessage]) -> str:
    """The previous user message followed by this one: 'how do I connect over websocket? and how do I stop it?'."""
    previous = next((m.content for m in reversed(history) if m.role == "user" and m.content.strip()), "")
    if not previous:
        return question
    return f"{previous.strip()} {question.strip()}"
