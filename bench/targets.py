"""The issues' performance targets and the verdict a measured figure earns: one table at the end of `make bench`.

Each bench section (load levels, offline load, workers, embedded scale, ingestion) measures its figures and
reports them as `Figure`s against its own `Target`s; bench.run prints every one with MET / NOT MET.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One target: `name` is the figure's key in the results JSON, `bound` the limit it is judged against."""

    name: str
    label: str
    unit: str
    bound: float
    at_most: bool  # True: the figure meets the target at or below the bound; False: at or above it

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "NOT MEASURED"
        met = value <= self.bound if self.at_most else value >= self.bound
        return "MET" if met else "NOT MET"


@dataclass(frozen=True)
class Figure:
    """A measured value for a target (None: the section could not measure it, and says why in `note`)."""

    target: Target
    value: float | None
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        t = self.target
        bound = f"{'<=' if t.at_most else '>='} {t.bound:g} {t.unit}"
        return {"name": t.name, "label": t.label, "value": self.value, "unit": t.unit, "target": bound,
                "verdict": t.verdict(self.value), "note": self.note}  # fmt: skip


def table(figures: Sequence[Figure]) -> str:
    """A fixed-width table, one line per target: label, figure, target, verdict."""
    lines = [f"{'target':<58} {'measured':>12} {'bound':>16}  verdict"]
    for f in figures:
        d = f.to_dict()
        value = "-" if f.value is None else f"{f.value:.4g} {f.target.unit}"
        note = f"  ({f.note})" if f.note else ""
        lines.append(f"{f.target.label:<58} {value:>12} {d['target']!s:>16}  {d['verdict']}{note}")
    return "\n".join(lines)
