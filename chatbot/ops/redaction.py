"""Log redaction: credentials are masked by their shape and by their value before a line is written.

Two nets, because either alone leaks:
- by shape: provider keys (`sk-...`, `sk-proj-...`, masked echoes like `sk-abc1****wxyz`), our own API keys
  (`cb_...`), long mixed-case alphanumeric keys (Cohere's 40 characters), bearer tokens, `name=value` pairs whose
  name says secret, passwords in URLs, and hex or alphanumeric values right after "key"/"token"/"secret"
  (how upstream error bodies echo a key: "Incorrect API key provided: 0123...");
- by value: every secret the process was configured with (provider keys, the widget signing secret, the API
  key digests; see known_secrets()) is registered at start-up, and any run of PARTIAL_CHARS or more of its
  characters is masked: the whole value, a truncated head in a cut-off error body, or a tail such as "...wxyz1234".

Bare 32-hex strings are NOT masked by shape: request and conversation ids have that shape, and logs that lose
their ids are worth less than the rare key they would catch (a configured key is caught by value anyway).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from chatbot.settings import Settings

REDACTED: Final = "[REDACTED]"
PARTIAL_CHARS: Final = 8
"""A run of this many characters of a known secret is masked; shorter secrets are not registered at all."""

_NOT_MASKED: Final = r"(?!\[REDACTED\])"
_SECRET_PATTERNS: Final = (
    # credentials inside URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    # Authorization headers and bearer tokens
    (re.compile(r"(?i)\b(bearer|basic)\s+" + _NOT_MASKED + r"[A-Za-z0-9._~+/=*-]{8,}"), r"\1 " + REDACTED),
    # key=value / "key": "value" pairs whose name says secret
    (
        re.compile(
            r"(?i)(\b[\w-]*(?:api[_-]?key|token|secret|password|passwd|authorization)[\"']?\s*[:=]\s*[\"']?)"
            + _NOT_MASKED
            + r"[^\s\"',;}&]+"
        ),
        r"\1" + REDACTED,
    ),
    # prefixed provider keys: sk-..., sk-proj-..., sk-ant-api03-..., rk-, pk_live_..., and their masked echoes
    (re.compile(r"\b(?:sk|rk|pk)[-_](?:[A-Za-z0-9*]+[-_])*[A-Za-z0-9*]{12,}"), REDACTED),
    (re.compile(r"\b(?:sk|rk|pk)-\.{3}[A-Za-z0-9]{4,}"), REDACTED),
    # our own keys (cb_ + token_urlsafe(32)), whole or cut, wherever they appear in free text
    (re.compile(r"\bcb_(?=[\w*-]*[A-Z0-9*])[\w*-]{8,}"), REDACTED),
    # a value right after a word that names a credential, as upstream error bodies echo keys
    (
        re.compile(
            r"(?i)(\b(?:api[ _-]?key|subscription[ _-]?key|key|token|secret|password|passwd|credential|signature)s?"
            r"(?:\s+(?:provided|is|was|given|used|value))?[\s:=\"'`(]{1,4})"
            + _NOT_MASKED
            + r"(?=[^\s\"'`),;]*[0-9*])[A-Za-z0-9*._+/=-]{16,}"
        ),
        r"\1" + REDACTED,
    ),
    # long mixed-case alphanumeric keys (Cohere: 40 characters), not part of a longer word or path
    (
        re.compile(
            r"(?<![\w./-])(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{32,100}(?![\w/-])"
        ),
        REDACTED,
    ),
)


def redact(text: str) -> str:
    """Mask anything shaped like a credential (known values too: see Redactor)."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redactor:
    """Masks credentials by shape and the registered secrets (and any PARTIAL_CHARS-long piece of them)."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._pieces: set[str] = set()
        self.register(known)

    def register(self, values: Iterable[str]) -> None:
        """Add secret values (too short ones are ignored: masking them would mask ordinary words)."""
        for value in values:
            if len(value) >= PARTIAL_CHARS:
                self._pieces.update(
                    value[i : i + PARTIAL_CHARS] for i in range(len(value) - PARTIAL_CHARS + 1)
                )

    def __call__(self, text: str) -> str:
        return redact(self._mask_known(text))

    def _mask_known(self, text: str) -> str:
        pieces = self._pieces
        if not pieces or len(text) < PARTIAL_CHARS:
            return text
        spans: list[list[int]] = []
        for i in range(len(text) - PARTIAL_CHARS + 1):
            if text[i : i + PARTIAL_CHARS] in pieces:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + PARTIAL_CHARS
                else:
                    spans.append([i, i + PARTIAL_CHARS])
        if not spans:
            return text
        out, last = [], 0
        for start, end in spans:
            out += [text[last:start], REDACTED]
            last = end
        out.append(text[last:])
        return "".join(out)


def known_secrets(settings: Settings) -> list[str]:
    """Every secret value in `settings` (each SecretStr field, wherever it is) and the API key digests."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    found += [spec.sha256 for spec in settings.auth.api_keys]
    return [value for value in found if value]


class RedactingFilter(logging.Filter):
    """Renders the message once, masks credentials in it, in the traceback and stack text and in string extras,
    and freezes the result (the formatter then sees only masked text)."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor is not None else Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        redact_ = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact_(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact_(value))
        return True


STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "message_id", "taskName"}
)
"""LogRecord attributes that are not `extra=` fields."""
