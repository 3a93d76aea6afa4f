"""Who asks, without any transport: the tenant whose documents answer, and what per-caller quotas count."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """The server builds one from the request's identity (api/context.py); a script builds its own."""

    tenant: str
    subject: str = ""  # requests-per-minute count against this (an API key, a widget origin); default: tenant

    @property
    def rate_key(self) -> str:
        return self.subject or f"tenant:{self.tenant}"
