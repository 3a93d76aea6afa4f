"""Hybrid search is the offline default: mode "auto" builds the BM25 model, a collection with the sparse
vector, and a pipeline that searches both."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from chatbot.providers.local_models import BM25SparseEmbedder
from chatbot.providers.registry import Providers, build_providers
from chatbot.stores.factory import vector_store
from chatbot.wiring import build_services
from tests.conftest import make_settings


class TestDefaultSearchMode:
    async def test_default_settings_build_the_bm25_model(self) -> None:
        """With no keys and mode auto the registry builds the BM25 sparse embedder; mode dense builds none."""
        async with AsyncExitStack() as stack:
            assert isinstance(build_providers(make_settings(), stack).sparse, BM25SparseEmbedder)
            assert build_providers(make_settings(retrieval={"mode": "dense"}), stack).sparse is None

    @pytest.mark.parametrize(
        ("mode", "sparse", "expected"),
        [
            ("auto", True, "hybrid"),
            ("sparse", True, "sparse"),
            ("dense", True, "dense"),
            ("hybrid", False, "dense"),
        ],
    )
    async def test_new_collection_and_pipeline_mode(
        self, offline_providers: Providers, mode: str, sparse: bool, expected: str
    ) -> None:
        """auto is hybrid on a new collection; without the sparse model every mode falls back to dense."""
        settings = make_settings(retrieval={"mode": mode}, qdrant={"collection": f"mode-{mode}-{sparse}"})
        providers = Providers(
            embedder=offline_providers.embedder,
            sparse=offline_providers.sparse if sparse else None,
            chat=offline_providers.chat,
            reranker=None,
        )
        store = vector_store(settings.qdrant)
        await store.open()
        try:
            async with build_services(settings, providers=providers, store=store) as services:
                assert store.has_sparse is sparse
                assert services.pipeline.search_mode == expected
        finally:
            await store.aclose()
