"""The offline extractive chat model (model.py) and its parts: sentences.py splits passages, boilerplate.py
keeps page furniture out, vectors.py scores by meaning, select.py picks sentences, compose.py writes the
answer."""

from chatbot.providers.extractive.compose import (
    ANSWER_PREFIX,
    NOT_FOUND,
    cite,
    compose_answer,
    count_words,
    pieces,
    truncate,
)
from chatbot.providers.extractive.model import SUPPORTED_OPTIONS, ExtractiveChatModel
from chatbot.providers.extractive.select import Pick, select_sentences
from chatbot.providers.extractive.sentences import MAX_CODE_LINES, Span, split_sentences

__all__ = [
    "ANSWER_PREFIX",
    "MAX_CODE_LINES",
    "NOT_FOUND",
    "SUPPORTED_OPTIONS",
    "ExtractiveChatModel",
    "Pick",
    "Span",
    "cite",
    "compose_answer",
    "count_words",
    "pieces",
    "select_sentences",
    "split_sentences",
    "truncate",
]
