"""llm-comply (an outside OpenAI Chat Completions compliance tool) against the served app, through its own CLI
(`llm-comply run --format openai-chat -u <base>/v1 --json`): every text and streaming check passes offline
(extractive model) and with a model provider (the OpenAI adapter and a fake tool-calling upstream), where the
tool-calling check passes too. Image input is refused by design (text only) and the reasoning check is
skipped by the tool itself for non-reasoning model names."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatbot.providers.registry import Providers
from chatbot.settings import OpenAISettings
from chatbot.stores.base import VectorStore
from tests.conftest import make_settings
from tests.loopback.conftest import served_with_openai_chat

TEXT_AND_STREAMING = (
    "chat-basic-response",
    "chat-system-prompt",
    "chat-multi-turn",
    "chat-streaming-response",
    "chat-streaming-usage",
    "chat-error-handling",
)
CLI = Path(sys.executable).with_name("llm-comply")


async def comply(url: str, checks: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Run the named checks with the llm-comply CLI; its JSON results by check id."""
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        "run",
        "--format", "openai-chat",
        "-u", f"{url}/v1",
        "-k", "not-needed",
        "-m", "chatbot",
        "--timeout", "20",
        "-f", ",".join(checks),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert out, err.decode()
    report = json.loads(out)
    return {r["id"]: r for r in report["results"]}


def failures(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {k: r.get("errors") for k, r in results.items() if r["status"] != "passed"}


def warnings(results: dict[str, dict[str, Any]]) -> set[str]:
    """The advisory findings, the id in each replaced by ID (ours is msg_..., the id POST /v1/chat/{id}/stop
    takes, where OpenAI's start with chatcmpl-: the one warning we keep on purpose)."""
    found = {w for r in results.values() for w in r.get("warnings") or []}
    return {re.sub(r"'msg_[0-9a-f]+\.*'", "ID", w) for w in found}


@pytest.fixture
async def served_llm(
    offline_providers: Providers, guide_store: VectorStore, openai_settings: OpenAISettings
) -> AsyncIterator[str]:
    """The app with the OpenAI adapter as chat model (fake upstream) and the offline embedder."""
    settings = make_settings()
    async with served_with_openai_chat(settings, offline_providers, guide_store, openai_settings) as url:
        yield url


class TestLLMComply:
    async def test_text_and_streaming_checks_pass_offline(self, served: str) -> None:
        """Every text and streaming check passes against the extractive (offline) app."""
        results = await comply(served, TEXT_AND_STREAMING)
        assert set(results) == set(TEXT_AND_STREAMING)
        assert failures(results) == {}
        assert warnings(results) == {"response.id ID missing 'chatcmpl-' prefix"}

    async def test_all_checks_but_images_pass_with_a_model_provider(self, served_llm: str) -> None:
        """With an LLM behind it, the text, streaming and tool-calling checks pass."""
        checks = (*TEXT_AND_STREAMING, "chat-tool-calling")
        results = await comply(served_llm, checks)
        assert set(results) == set(checks)
        assert failures(results) == {}
        assert warnings(results) == {"response.id ID missing 'chatcmpl-' prefix"}
