"""What the pipeline is asked: one user message and the parameters of its answer (Pipeline.stream_answer's input).

A new field that changes the answer's text joins the answer cache's key by itself; one that does not goes in
rag.cached_answers._NOT_GENERATION.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatbot.providers.base import PLAIN, ChatMessage, GenerationOptions
from chatbot.stores.base import MetadataFilter


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    tenant: str
    question: str
    message_id: str
    conversation_id: str = ""
    # Given by clients that keep their own history (OpenAI-compatible API); then nothing is saved.
    history: Sequence[ChatMessage] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    # An untrusted caller (a widget visitor): its answers enter the shared cache only with default parameters.
    untrusted: bool = False
    options: GenerationOptions = PLAIN
    # After the question, in a client-kept history: the assistant's tool calls and the tool results.
    continuation: Sequence[ChatMessage] = ()
    where: MetadataFilter | None = None  # search only the chunks whose metadata matches (never cached)
