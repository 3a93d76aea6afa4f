"""Prompt templates from prompts/, loaded once at start-up, rendered with undefined variables as errors.

Retrieved text and user text pass through the `fence` filter, which neutralises our delimiter tags so that a
document cannot close its <source> element or open a fake <question>.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from chatbot.errors import ConfigError
from chatbot.providers.base import ChatMessage, Passage

TEMPLATES = ("system.j2", "context.j2", "question.j2", "rewrite.j2")
# U+2039 (single left-pointing angle quotation mark) looks like "<" but is not our delimiter: the point.
_DELIMITERS = re.compile(r"<(/?)\s*(sources?|question|conversation)\b", re.IGNORECASE)


def fence(text: object) -> str:
    """Make text safe to place between our delimiter tags: `<source` becomes `‹source`."""  # noqa: RUF002
    return _DELIMITERS.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", str(text))  # noqa: RUF001


def fence_attribute(text: object) -> str:
    """Make text safe inside a quoted attribute of our tags (a title): no quote or angle bracket survives,
    so a document titled `x" id="7` cannot add an attribute (a forged citation number) or close the tag."""
    return str(text).replace('"', "'").replace("<", "\u2039").replace(">", "\u203a")


def default_prompts_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "prompts"


class Prompts:
    def __init__(self, directory: Path | None = None, *, assistant_name: str = "this product") -> None:
        directory = directory or default_prompts_dir()
        missing = [t for t in TEMPLATES if not (directory / t).is_file()]
        if missing:
            raise ConfigError(
                f"Prompt templates missing in {directory}: {', '.join(missing)} (CHATBOT_PROMPTS_DIR)"
            )
        env = Environment(
            loader=FileSystemLoader(str(directory)),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,  # noqa: S701 - plain-text prompts for a model, never HTML
        )
        env.filters["fence"] = fence
        self._templates = {name: env.get_template(name) for name in TEMPLATES}
        self.assistant_name = assistant_name

    def chat_messages(
        self, question: str, passages: Sequence[Passage], history: Sequence[ChatMessage]
    ) -> list[ChatMessage]:
        """system (rules + numbered sources), the earlier turns, then the question."""
        system = self._templates["system.j2"].render(assistant_name=self.assistant_name)
        titled = [replace(p, title=fence_attribute(p.title)) for p in passages]  # titles sit in title="..."
        context = self._templates["context.j2"].render(passages=titled)
        user = self._templates["question.j2"].render(question=question)
        return [
            ChatMessage("system", f"{system.strip()}\n\n{context.strip()}"),
            *history,
            ChatMessage("user", user.strip()),
        ]

    def rewrite_messages(self, question: str, history: Sequence[ChatMessage]) -> list[ChatMessage]:
        text = self._templates["rewrite.j2"].render(question=question, history=history)
        return [ChatMessage("user", text.strip())]
