"""Every blueprint the app serves. A transport module adds its blueprint here (one line each)."""

from __future__ import annotations

from quart import Blueprint

from chatbot.api import debug, http, metrics, openai_compat, openapi, vercel, widget, ws


def blueprints() -> list[Blueprint]:
    return [http.bp, ws.bp, debug.bp, metrics.bp, widget.bp, openai_compat.bp, vercel.bp, openapi.bp]
