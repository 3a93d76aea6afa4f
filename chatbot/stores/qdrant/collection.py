"""Opening the chunks collection: create it on first use with the vectors and metadata this server embeds
with, refuse one filled by another embedding model, and migrate one built with collection-wide IDF to
per-tenant IDF (statistics.py)."""

from __future__ import annotations

import logging

from qdrant_client import models

from chatbot.errors import EmbeddingMismatch
from chatbot.settings import QdrantSettings
from chatbot.stores.qdrant.points import DENSE, SPARSE
from chatbot.stores.qdrant.statistics import Run, migrate_to_tenant_idf, uses_collection_idf

log = logging.getLogger(__name__)


async def recorded_dense_model(run: Run, name: str) -> str | None:
    """The dense model collection `name` records (metadata dense_model); None when it does not exist."""
    if not await run(lambda c: c.collection_exists(name)):
        return None
    info: models.CollectionInfo = await run(lambda c: c.get_collection(name))
    recorded = (info.config.metadata or {}).get("dense_model")
    return str(recorded) if recorded is not None else None


async def switch_alias(run: Run, name: str, target: str) -> str | None:
    """Make `name` an alias of collection `target`, atomically when `name` is already an alias. Returns the
    collection `name` pointed at until now, for the caller to drop; None when `name` was a collection itself
    (the first rebuild): it is dropped here, just before the alias takes its name."""
    aliases = await run(lambda c: c.get_aliases())
    current = next((a.collection_name for a in aliases.aliases if a.alias_name == name), None)
    create = models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=target, alias_name=name)
    )
    operations: list[models.AliasOperations] = [create]
    if current is None:
        await run(lambda c: c.delete_collection(name))
    else:
        operations.insert(0, models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=name)))
    await run(lambda c: c.update_collection_aliases(change_aliases_operations=operations))
    return current


async def open_collection(
    run: Run, settings: QdrantSettings, dense_model: str, dimensions: int, *, sparse: bool
) -> tuple[bool, set[str]]:
    """Create the collection on first use; refuse one that was filled by another embedding model. Returns
    whether it holds BM25 vectors and the payload fields it already indexes."""
    name = settings.collection
    if await run(lambda c: c.collection_exists(name)):
        info: models.CollectionInfo = await run(lambda c: c.get_collection(name))
        meta = info.config.metadata or {}
        recorded = meta.get("dense_model")
        if recorded is not None and recorded != dense_model:
            raise EmbeddingMismatch(
                f"Collection '{name}' holds vectors from '{recorded}', but this server embeds with "
                f"'{dense_model}'. Re-embed it (`python -m chatbot reindex`), use another collection "
                "(CHATBOT_QDRANT__COLLECTION) or the same model."
            )
        sparse_cfg = info.config.params.sparse_vectors or {}
        has_sparse = SPARSE in sparse_cfg
        if uses_collection_idf(info, SPARSE):
            log.warning("collection '%s' uses collection-wide IDF: migrating to per-tenant IDF", name)
            moved = await migrate_to_tenant_idf(run, name, SPARSE)
            log.warning("collection '%s' migrated to per-tenant IDF (%d points)", name, moved)
        return has_sparse, set(info.payload_schema or {})
    await run(
        lambda c: c.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)},
            # no IDF modifier: Qdrant's is collection-wide; the query carries the tenant's IDF
            sparse_vectors_config={SPARSE: models.SparseVectorParams()} if sparse else None,
            shard_number=settings.shard_number,
            replication_factor=settings.replication_factor,
            metadata={
                "dense_model": dense_model,
                "dimensions": dimensions,
                "sparse_model": SPARSE if sparse else None,
                "sparse_idf": "tenant",
            },
        )
    )
    return sparse, set()
