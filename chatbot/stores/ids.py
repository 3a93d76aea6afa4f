"""How stored things are named: the tenant guard and the deterministic ids of documents, chunks and
conversations. A point id is uuid5 of its tenant, so ids never collide across tenants; the Qdrant answer
cache derives its ids from the same namespace."""

from __future__ import annotations

import uuid

POINT_NAMESPACE = uuid.UUID("6f0c2a52-52a4-4cf4-9d55-4f7d0b5a8a11")


def check_tenant(tenant: str) -> str:
    """The guard every tenant-scoped store call passes: an empty tenant raises instead of matching all."""
    if not tenant or not isinstance(tenant, str):
        raise ValueError("a tenant is required for every vector store query")
    return tenant


def document_id(tenant: str, source: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"doc\x00{tenant}\x00{source}"))


def point_id(tenant: str, source: str, chunk_index: int, content_hash: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant}\x00{source}\x00{chunk_index}\x00{content_hash}"))


def new_conversation_id() -> str:
    return uuid.uuid4().hex
