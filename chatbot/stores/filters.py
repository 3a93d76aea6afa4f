"""Document metadata and the metadata filter language (engine-free: stores/qdrant translates a filter).

Metadata is a flat JSON object given at ingestion (upload field `metadata`, CLI `--metadata`) and stored on
every chunk of the document under the payload key `metadata`, so a user's keys never meet the system's
(`tenant`, `doc_id`, ...): a filter on "tenant" reads metadata.tenant and cannot widen the tenant scope.

    {"tags": ["hr", "policy"], "lang": "en", "year": 2024, "url": "https://intranet/handbook"}

A filter is an object of conditions on metadata keys, all of which must hold:

    {"lang": "en"}                       equal (for a list value: one of its items is equal)
    {"tags": {"any": ["hr", "legal"]}}   one of the values (for a list value: they share one item)
    {"year": {"gte": 2020, "lt": 2025}}  a numeric range (gt, gte, lt, lte)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"
MAX_KEYS = 32
MAX_LIST = 64
MAX_STRING = 1024
MAX_METADATA_BYTES = 8192
MAX_FILTER_KEYS = 16

Key = Annotated[str, Field(pattern=KEY_PATTERN)]
Text = Annotated[str, Field(max_length=MAX_STRING)]
Scalar = StrictBool | StrictInt | StrictFloat | Text
"""bool first: a JSON true is a bool, never 1."""
Match = StrictBool | StrictInt | Text
"""What a filter can test for equality (as Qdrant matches: no floats; use a range for them)."""


class Metadata(RootModel[dict[Key, Scalar | Annotated[list[Scalar], Field(max_length=MAX_LIST)]]]):
    """A document's flat metadata: at most 32 keys; values are strings, numbers, booleans or lists of them."""

    @model_validator(mode="after")
    def _bounded(self) -> Metadata:
        if len(self.root) > MAX_KEYS:
            raise ValueError(f"at most {MAX_KEYS} metadata keys")
        for value in self.root.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, float) and not math.isfinite(item):
                    raise ValueError("metadata numbers must be finite")
        if len(json.dumps(self.root, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
        return self


Number = StrictInt | StrictFloat


class Condition(BaseModel):
    """One key's condition: `any` of a list of values, or a numeric range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    any: Annotated[list[Match], Field(min_length=1, max_length=MAX_LIST)] | None = None
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        bounds = (self.gt, self.gte, self.lt, self.lte)
        has_range = any(b is not None for b in bounds)
        if (self.any is None) == (not has_range) or (self.any is not None and has_range):
            raise ValueError("a condition is either {'any': [...]} or a range of gt/gte/lt/lte")
        if any(isinstance(b, float) and not math.isfinite(b) for b in bounds):
            raise ValueError("range bounds must be finite")
        return self

    @property
    def is_range(self) -> bool:
        return self.any is None


class MetadataFilter(RootModel[dict[Key, Match | Condition]]):
    """Conditions on metadata keys that must all hold (see the module docstring); at most 16 keys."""

    model_config = ConfigDict(frozen=True)

    @model_validator(mode="after")
    def _bounded(self) -> MetadataFilter:
        if not self.root:
            raise ValueError("a filter names at least one metadata key")
        if len(self.root) > MAX_FILTER_KEYS:
            raise ValueError(f"a filter names at most {MAX_FILTER_KEYS} keys")
        return self

    def conditions(self) -> list[tuple[str, Condition]]:
        """Every key's condition, an equality as {'any': [value]}."""
        return [
            (key, value if isinstance(value, Condition) else Condition(any=[value]))
            for key, value in self.root.items()
        ]

    def matches(self, metadata: Any) -> bool:
        """The filter on one chunk's stored metadata (Qdrant's semantics)."""
        return self.predicate()(metadata)

    def predicate(self) -> Callable[[Any], bool]:
        """matches() compiled once (sets for `any`, bounds for ranges): the in-memory mirror calls it for
        every point of the tenant."""
        tests = [(key, _compiled(cond)) for key, cond in self.conditions()]

        def holds(metadata: Any) -> bool:
            stored = metadata if isinstance(metadata, dict) else {}
            return all(test(stored.get(key)) for key, test in tests)

        return holds


def _kind(value: Any) -> str | None:
    """Equality as Qdrant matches payload values: a bool only equals a bool, an int an int, a string a
    string (a float never equals: a filter has no float equality)."""
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "i"
    return "s" if isinstance(value, str) else None


def _compiled(cond: Condition) -> Callable[[Any], bool]:
    if cond.any is not None:
        wanted = frozenset((_kind(w), w) for w in cond.any)

        def one_of(value: Any) -> bool:
            values = value if isinstance(value, list) else (value,)
            return any((kind, v) in wanted for v in values if (kind := _kind(v)) is not None)

        return one_of

    def in_range(value: Any) -> bool:
        values = value if isinstance(value, list) else (value,)
        return any(_in_range(cond, v) for v in values)

    return in_range


def _in_range(cond: Condition, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (
        (cond.gt is None or value > cond.gt)
        and (cond.gte is None or value >= cond.gte)
        and (cond.lt is None or value < cond.lt)
        and (cond.lte is None or value <= cond.lte)
    )
