"""Who asks, without any transport: the tenant whose documents answer, and what per-caller quotas count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["local", "open", "key", "widget"]
"""local: a script or the CLI; open: open access (no API keys configured); key: an API key; widget: a page
visitor holding a widget token (untrusted: per-visitor limits, and no say in what the tenant shares)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The server builds one from the request's identity (api/context.py); a script builds its own."""

    tenant: str
    subject: str = ""  # requests-per-minute count against this (an API key, a widget origin); default: tenant
    kind: Kind = "local"
    visitor: str = ""  # a widget visitor's id, bound into its token (per-visitor limits)
    address: str = ""  # the client's address (the socket's, or X-Forwarded-For from a trusted proxy)

    @property
    def rate_key(self) -> str:
        return self.subject or f"tenant:{self.tenant}"

    @property
    def untrusted(self) -> bool:
        """A widget visitor: anyone on the site's pages."""
        return self.kind == "widget"
