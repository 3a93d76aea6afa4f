"""Fail-closed roles (issue 14 item 3): credentials are refused on every endpoint whose role they lack."""

from __future__ import annotations

import httpx

from chatbot.widget_tokens import mint, signing_key
from chatbot.wiring import Services

SITE = "https://site.example"


class TestLoopLagReset:
    async def test_widget_token_cannot_reset_the_looplag_monitor(
        self, served: str, services: Services
    ) -> None:
        """POST /debug/looplag/reset is admin-only: a widget token (role chat) gets 403 forbidden."""
        token, _ = mint(signing_key(services.settings.auth), tenant="public", origin=SITE, ttl_seconds=60)
        async with httpx.AsyncClient(base_url=served) as client:
            r = await client.post("/debug/looplag/reset", headers={"X-Widget-Token": token, "Origin": SITE})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"
