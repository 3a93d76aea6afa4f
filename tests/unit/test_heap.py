"""The start-up heap freeze (ops/heap.py)."""

from __future__ import annotations

import gc
import weakref

from chatbot.ops.heap import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_freeze_collects_garbage_first_and_freezes_the_survivors() -> None:
    """Start-up cycles that are already garbage are freed, not frozen; live objects leave the passes."""
    garbage = _Node()
    dead = weakref.ref(garbage)
    del garbage
    live = [_Node() for _ in range(10)]
    try:
        frozen = freeze_startup_heap()
        assert dead() is None
        assert frozen == gc.get_freeze_count() >= len(live)
        assert all(o is not live[0] for generation in range(3) for o in gc.get_objects(generation))
    finally:
        gc.unfreeze()
