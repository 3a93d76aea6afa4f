"""`python -m chatbot ask`: one answer through the chat service, from the command line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from chatbot.__main__ import main

OFFLINE = {
    "CHATBOT_EMBEDDING_PROVIDER": "local",
    "CHATBOT_CHAT_PROVIDER": "extractive",
    "CHATBOT_QDRANT__PATH": ":memory:",
    "CHATBOT_SERVER__INGEST_ON_START": "true",
    "CHATBOT_SERVER__UVLOOP": "false",
}


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Offline settings through the environment (as a user sets them); the root logger restored after."""
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class TestAsk:
    def test_prints_the_answer_then_numbered_sources(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The answer's tokens, then one [n] line per source; the conversation id on stderr."""
        assert main(["ask", "How do I stop an answer?"]) == 0
        out, err = capsys.readouterr()
        answer, _, listing = out.partition("\n[1] ")
        assert "[1]" in answer
        assert listing
        assert "conversation: " in err

    def test_an_unknown_conversation_is_an_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--conversation with an id nobody created exits 1 with the error's code, no traceback."""
        assert main(["ask", "hi", "--conversation", "nope"]) == 1
        assert "unknown_conversation" in capsys.readouterr().err
