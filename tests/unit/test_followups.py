"""Follow-up detection and the offline rewrite (pure functions)."""

from __future__ import annotations

import pytest

from chatbot.providers.base import ChatMessage
from chatbot.rag.followups import fallback_rewrite, looks_like_followup


class TestLooksLikeFollowup:
    @pytest.mark.parametrize(
        "question",
        [
            "and how do I stop it?",
            "what about PDFs?",
            "Why?",
            "How do I configure that for a production deployment with several replicas?",
            "Can these documents be deleted later by somebody with an ingest key?",
            "But does the server keep running when I close the browser tab completely?",
        ],
    )
    def test_short_or_leaning_messages_are_followups(self, question: str) -> None:
        """Short messages, and messages with a pronoun or a leading conjunction, lean on the conversation."""
        assert looks_like_followup(question)

    @pytest.mark.parametrize(
        "question",
        [
            "How do I upload a PDF document to the server over HTTP with curl?",
            "Which settings control the Qdrant collection name and the server URL?",
        ],
    )
    def test_standalone_questions_are_not(self, question: str) -> None:
        """A long question that names its subject needs no rewrite."""
        assert not looks_like_followup(question)

    def test_words_inside_other_words_do_not_count(self) -> None:
        """'it' in 'edit' or 'one' in 'someone' is not a pronoun."""
        question = "Where can someone edit the configuration file of the websocket server?"
        assert not looks_like_followup(question)


class TestFallbackRewrite:
    def test_prepends_the_previous_user_question(self) -> None:
        """The last user message supplies the missing subject; assistant turns are skipped."""
        history = [
            ChatMessage("user", "how do I upload documents?"),
            ChatMessage("assistant", "Use POST /v1/documents."),
            ChatMessage("user", "  how do I connect over websocket?  "),
            ChatMessage("assistant", "Connect to /v1/ws."),
        ]
        rewritten = fallback_rewrite(" and how do I stop it? ", history)
        assert rewritten == "how do I connect over websocket? and how do I stop it?"

    def test_without_a_previous_question_it_is_unchanged(self) -> None:
        """No earlier user message (or only blank ones): the question is searched as it is."""
        assert fallback_rewrite("and then?", []) == "and then?"
        history = [ChatMessage("assistant", "Hello."), ChatMessage("user", "   ")]
        assert fallback_rewrite("and then?", history) == "and then?"
