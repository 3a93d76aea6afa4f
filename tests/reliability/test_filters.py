"""Metadata filters: the language refuses what it does not define, Qdrant's translation and the in-memory
mirror's predicate agree point for point, and no filter reaches past the caller's tenant."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydantic import ValidationError

from chatbot.settings import QdrantSettings
from chatbot.stores.base import ChunkRecord, Metadata, MetadataFilter, QueryVectors
from chatbot.stores.edge.store import EdgeStore
from chatbot.stores.factory import vector_store
from chatbot.stores.qdrant.conditions import metadata_filter
from chatbot.stores.qdrant.indexes import index_schemas
from chatbot.stores.qdrant.mirror import MirroredStore
from chatbot.stores.qdrant.store import QdrantStore

DIMS = 8
LANGS = ("en", "de", "fr")
TAGS = ("hr", "legal", "it", "ops")


def metadata_of(d: int) -> dict[str, Any]:
    rnd = random.Random(d)
    meta: dict[str, Any] = {
        "lang": LANGS[d % 3],
        "year": 2015 + d % 10,
        "tags": sorted(rnd.sample(TAGS, rnd.randint(0, 3))),
        "public": d % 2 == 0,
        "score": round(rnd.uniform(0, 1), 3),
    }
    if d % 4 == 0:
        meta["tenant"] = "b"  # a metadata key named like a system field
    return meta


async def filled(
    name: str, *, mirror: bool, engine: str = "qdrant-local"
) -> QdrantStore | MirroredStore | EdgeStore:
    """qdrant-client's local mode (mirror=False), its mirror, or Qdrant Edge (engine="edge")."""
    settings = QdrantSettings(path=":memory:", collection=name, memory_index=mirror, engine=engine)  # type: ignore[arg-type]
    store = vector_store(settings)
    await store.open()
    await store.ensure_collection("test/model", DIMS, sparse=False)
    rnd = random.Random(3)
    records, dense = [], []
    for d in range(24):
        tenant = "a" if d % 3 else "b"
        for c in range(3):
            records.append(
                ChunkRecord(
                    tenant, f"doc{d}", f"doc{d}.md", f"Doc {d}", (), c, f"t{d}.{c}", f"h{d}{c}", "v1",
                    metadata=metadata_of(d),
                )
            )  # fmt: skip
            dense.append([rnd.gauss(0, 1) for _ in range(DIMS)])
    await store.upsert(records, dense, None)
    return store


FILTERS: list[dict[str, Any]] = [
    {"lang": "en"},
    {"tags": "hr"},
    {"tags": {"any": ["legal", "it"]}},
    {"year": {"gte": 2020}},
    {"year": {"gt": 2016, "lte": 2019}, "lang": {"any": ["de", "fr"]}},
    {"public": True},
    {"score": {"lt": 0.5}},
    {"year": 2021},
    {"missing_key": "x"},
    {"tenant": "b"},
    {"tenant": {"any": ["a", "b"]}, "public": False},
]


class TestTheLanguage:
    @pytest.mark.parametrize(
        "bad",
        [
            {},
            {"a": {"any": []}},
            {"a": {"gte": 1, "any": [1]}},
            {"a": {"gte": "2020"}},
            {"a": {"eq": 1}},
            {"a": {"any": [{"nested": 1}]}},
            {"a": [1, 2]},
            {"a": 1.5},
            {"$where": 1},
            {"a b": 1},
            {"x" * 65: 1},
            {f"k{i}": 1 for i in range(17)},
            {"a": {"any": list(range(65))}},
            {"a": None},
            [{"a": 1}],
            "lang = en",
        ],
    )
    def test_a_filter_outside_the_language_is_refused(self, bad: Any) -> None:
        """Empty, unknown operators, nested values, floats for equality, odd keys and oversize filters fail."""
        with pytest.raises(ValidationError):
            MetadataFilter.model_validate(bad)

    @pytest.mark.parametrize(
        "bad",
        [
            {"a": {"b": 1}},
            {"a": [[1]]},
            {"a": [{"b": 1}]},
            {"a": "x" * 1025},
            {"a": list(range(65))},
            {f"k{i}": 1 for i in range(33)},
            {f"k{i}": "x" * 1000 for i in range(12)},
            {"a": float("nan")},
            {"bad key": 1},
            ["a"],
        ],
    )
    def test_metadata_must_be_flat_and_bounded(self, bad: Any) -> None:
        """Nested objects, lists of lists, long strings, too many keys, over 8 KB and NaN are refused."""
        with pytest.raises(ValidationError):
            Metadata.model_validate(bad)

    def test_a_json_true_is_a_bool_never_one(self) -> None:
        """{"public": true} matches a stored true, not a stored 1 (as Qdrant matches)."""
        flt = MetadataFilter.model_validate_json('{"public": true}')
        assert flt.matches({"public": True})
        assert not flt.matches({"public": 1})

    def test_payload_indexes_follow_the_condition(self) -> None:
        """A server indexes a range field as float, strings as keyword, ints as integer, bools as bool."""
        flt = MetadataFilter.model_validate(
            {"year": {"gte": 2020}, "lang": "en", "n": {"any": [1, 2]}, "public": True}
        )
        assert {k: v.value for k, v in index_schemas(flt).items()} == {
            "metadata.year": "float",
            "metadata.lang": "keyword",
            "metadata.n": "integer",
            "metadata.public": "bool",
        }

    def test_conditions_never_name_a_system_field(self) -> None:
        """Every translated condition reads metadata.<key>: a filter cannot address tenant or doc_id."""
        flt = MetadataFilter.model_validate({"tenant": "b", "doc_id": {"any": ["x", "y"]}})
        text = json.dumps(metadata_filter(flt).model_dump(mode="json"))
        assert '"key": "tenant"' not in text
        assert '"key": "doc_id"' not in text
        assert '"key": "metadata.tenant"' in text


ENGINES = ["mirror", "edge"]  # compared with qdrant-client's own filtering
STORES = [(False, "qdrant-local"), (True, "qdrant-local"), (True, "edge")]  # (mirror, engine)


class TestStores:
    @pytest.mark.parametrize("engine", ENGINES)
    @pytest.mark.parametrize("raw", FILTERS, ids=[json.dumps(f) for f in FILTERS])
    async def test_qdrant_and_the_mirror_select_the_same_chunks(
        self, raw: dict[str, Any], engine: str
    ) -> None:
        """For each filter, qdrant-client's own filtering and the mirror's predicate (or Edge's filtering with
        payload indexes) return the same hits, and every hit is the caller's tenant and satisfies the filter."""
        qdrant = await filled("q", mirror=False)
        mirror = await filled("m", mirror=True, engine="edge" if engine == "edge" else "qdrant-local")
        try:
            flt = MetadataFilter.model_validate(raw)
            query = [QueryVectors(dense=[1.0] * DIMS)]
            for tenant in ("a", "b"):
                kw: dict[str, Any] = {"mode": "dense", "limit": 100, "where": flt}
                by_qdrant = await qdrant.search(tenant, query, **kw)
                by_mirror = await mirror.search(tenant, query, **kw)
                assert [(h.doc_id, h.chunk_index) for h in by_qdrant] == [
                    (h.doc_id, h.chunk_index) for h in by_mirror
                ]
                expected = {
                    f"doc{d}" for d in range(24) if ("a" if d % 3 else "b") == tenant and flt.matches(metadata_of(d))
                }  # fmt: skip
                assert {h.doc_id for h in by_mirror} == expected
        finally:
            await qdrant.aclose()
            await mirror.aclose()

    @pytest.mark.parametrize(("mirror", "engine"), STORES)
    async def test_a_filter_naming_tenant_cannot_reach_another_tenant(
        self, mirror: bool, engine: str
    ) -> None:
        """Tenant a filtering on tenant=b (or any of a, b) gets only a's chunks whose metadata says so."""
        store = await filled("t", mirror=mirror, engine=engine)
        try:
            for raw in ({"tenant": "b"}, {"tenant": {"any": ["a", "b"]}}):
                hits = await store.search(
                    "a", [QueryVectors(dense=[1.0] * DIMS)], mode="dense", limit=100,
                    where=MetadataFilter.model_validate(raw),
                )  # fmt: skip
                assert hits
                assert all(int(h.doc_id[3:]) % 3 for h in hits)  # tenant a's documents only
                assert all(h.metadata.get("tenant") == "b" for h in hits)
        finally:
            await store.aclose()

    @pytest.mark.parametrize(("mirror", "engine"), STORES)
    async def test_neighbouring_chunks_of_one_document(self, mirror: bool, engine: str) -> None:
        """chunks() returns a document's chunks in a range, in order; another tenant's document is empty."""
        store = await filled("n", mirror=mirror, engine=engine)
        try:
            found = await store.chunks("a", "doc1", 0, 5)
            assert [c.chunk_index for c in found] == [0, 1, 2]
            assert found[0].metadata["lang"] == "de"
            assert [c.chunk_index for c in await store.chunks("a", "doc1", 1, 1)] == [1]
            assert await store.chunks("b", "doc1", 0, 5) == []
            with pytest.raises(ValueError, match="tenant is required"):
                await store.chunks("", "doc1", 0, 5)
        finally:
            await store.aclose()


class TestMirrorMasks:
    async def test_a_cached_filter_mask_follows_every_write(self) -> None:
        """The mirror caches a filter's mask per tenant; an upsert, a metadata relabel and a delete each
        change what the same filter finds, and a score threshold never narrows the cached mask."""
        store = await filled("c", mirror=True)
        try:
            flt = MetadataFilter.model_validate({"lang": "fr"})
            query = [QueryVectors(dense=[1.0] * DIMS)]

            async def docs(threshold: float | None = None) -> set[str]:
                hits = await store.search(
                    "a", query, mode="dense", limit=100, where=flt, score_threshold=threshold
                )
                return {h.doc_id for h in hits}

            before = await docs()
            assert before
            await docs(threshold=0.99)  # narrows this search only
            assert await docs() == before
            extra = ChunkRecord("a", "new", "new.md", "N", (), 0, "t", "hn", "v1", metadata={"lang": "fr"})
            await store.upsert([extra], [[1.0] * DIMS], None)
            assert await docs() == before | {"new"}
            ids = list(store.index.document_points("a", "new"))  # type: ignore[union-attr]
            await store.set_version(ids, "v2", metadata={"lang": "en"})
            assert await docs() == before
            gone = sorted(before)[0]
            await store.delete_document("a", gone)
            assert await docs() == before - {gone}
        finally:
            await store.aclose()
