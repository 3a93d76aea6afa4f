"""Prompt templates from prompts/, loaded once at start-up, rendered with undefined variables as errors.

Retrieved text and user text pass through the `fence` filter before they are placed between our delimiter
tags. It first normalises what a model would read through: NFKC (full-width and other compatibility forms
become ASCII: `\uff1c/source\uff1e` is `</source>`), then drops invisible characters (zero-width, bidi
controls, tag characters, variation selectors, other controls but newline and tab). Then it neutralises
(a) our delimiters in any spacing or case, so a document cannot close its <source> element or open a fake
<question>, and (b) the control tokens of common chat templates (ChatML `<|im_end|>`, Llama 3 `<|eot_id|>`,
Llama 2 / Mistral `[INST]` `<<SYS>>` `<s>`, Gemma `<start_of_turn>`, Command R and DeepSeek `<|...|>`), so
text cannot end a turn or open a system turn if a prompt is ever rendered through a raw chat template.
Neutralising swaps the ASCII brackets for look-alikes that no template or tokenizer treats as syntax
(U+2039/U+203A for angle brackets, U+2045/U+2046 for square ones); the words stay readable to the model.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from chatbot.errors import ConfigError
from chatbot.providers.base import ChatMessage, Passage

TEMPLATES = ("system.j2", "context.j2", "question.j2", "rewrite.j2")
LANGLE, RANGLE, LSQUARE, RSQUARE = "\u2039", "\u203a", "\u2045", "\u2046"

_KEEP_CONTROLS = frozenset("\n\t")
_INVISIBLE_CATEGORIES = frozenset(
    {"Cf", "Cc", "Co", "Cs", "Cn"}
)  # format, control, private, surrogate, unassigned
_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
# Angle brackets that read like "<" / ">" but survive NFKC (CJK, mathematical); ours (U+2039/U+203A) included.
_OPEN = "<\u3008\u27e8\u2329\u2039"
_CLOSE = ">\u3009\u27e9\u232a\u203a"
_DELIMITER = re.compile(rf"[{_OPEN}](\s*/?\s*)(sources?|question|conversation)\b", re.IGNORECASE)
_TEMPLATE_TOKENS = re.compile(
    rf"[{_OPEN}]\s*(?:"
    r"\|[^|\n]{0,40}?\|"  # ChatML, Llama 3, Phi, Command R, DeepSeek: <|...|>
    r"|<\s*/?\s*SYS\s*>"  # Llama 2: <<SYS>> <</SYS>>
    r"|/?\s*(?:s|bos|eos|pad|unk|start_of_turn|end_of_turn)"  # <s> </s> <bos> <start_of_turn> ...
    rf")\s*[{_CLOSE}]"
    r"|\[\s*/?\s*(?:INST|SYS|SYSTEM_PROMPT|TOOL_CALLS|AVAILABLE_TOOLS|TOOL_RESULTS)\s*\]",  # Mistral
    re.IGNORECASE,
)
_ANGLES = str.maketrans({"<": LANGLE, ">": RANGLE, "[": LSQUARE, "]": RSQUARE})


def normalize_text(text: str) -> str:
    """NFKC, without invisible characters: what the fence inspects (and the model then reads)."""
    text = _VARIATION_SELECTORS.sub("", unicodedata.normalize("NFKC", text))
    # each distinct character is looked up once (a passage has ~1,500 characters, ~80 distinct ones)
    drop = {
        ord(c): None
        for c in set(text)
        if c not in _KEEP_CONTROLS and unicodedata.category(c) in _INVISIBLE_CATEGORIES
    }
    return text.translate(drop) if drop else text


def fence(text: object) -> str:
    """Make text safe to place between our delimiter tags: normalised, `<source` becomes `\u2039source`, and
    chat-template control tokens lose their brackets (`<|im_end|>` becomes `\u2039|im_end|\u203a`)."""
    text = normalize_text(str(text))
    text = _TEMPLATE_TOKENS.sub(lambda m: m.group(0).translate(_ANGLES), text)
    return _DELIMITER.sub(lambda m: f"{LANGLE}{m.group(1).strip()}{m.group(2)}", text)


def fence_attribute(text: object) -> str:
    """Make text safe inside a quoted attribute of our tags (a title): no quote or angle bracket survives,
    so a document titled `x" id="7` cannot add an attribute (a forged citation number) or close the tag."""
    return normalize_text(str(text)).replace('"', "'").replace("<", LANGLE).replace(">", RANGLE)


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
        sources = "\x00".join((directory / t).read_text(encoding="utf-8") for t in TEMPLATES) + assistant_name
        self.version = hashlib.sha256(sources.encode()).hexdigest()[:16]  # keys the answer cache

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
            *(replace(m, content=fence(m.content)) for m in history),  # earlier turns are user text too
            ChatMessage("user", user.strip()),
        ]

    def rewrite_messages(self, question: str, history: Sequence[ChatMessage]) -> list[ChatMessage]:
        text = self._templates["rewrite.j2"].render(question=question, history=history)
        return [ChatMessage("user", text.strip())]
