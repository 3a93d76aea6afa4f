"""`serve --workers N` in this process: what it refuses, the read-only store copies, and the supervisor's signal
handling with real spawned processes (tests/redis/test_workers.py serves two real workers)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.synchronize import Event

import pytest

from chatbot.__main__ import main
from chatbot.cli_serve import check_shareable, supervise
from chatbot.errors import ChatbotError, ConfigError
from chatbot.settings import QdrantSettings, Settings
from chatbot.stores.qdrant.store import QdrantStore
from chatbot.stores.read_only import ReadOnlyStore
from chatbot.stores.records import ChunkRecord

SPAWN = multiprocessing.get_context("spawn")


def shareable(**server: object) -> Settings:
    settings = Settings(
        redis={"url": "redis://127.0.0.1:1"},
        jobs={"backend": "redis"},
        qdrant={"url": "http://127.0.0.1:6333"},
    )
    settings.server = settings.server.model_copy(update={"workers": 2, **server})
    return settings


class TestRefusals:
    def test_redis_jobs_and_a_qdrant_server_are_enough(self) -> None:
        """Shared state everywhere: accepted."""
        check_shareable(shareable())

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"redis": {"url": None}, "jobs": {"backend": "local"}}, "CHATBOT_REDIS__URL"),
            ({"jobs": {"backend": "local"}}, "CHATBOT_JOBS__BACKEND=redis"),
            ({"qdrant": {"url": None, "path": "./data/qdrant"}}, "EMBEDDED_REPLICAS"),
            ({"qdrant": {"url": None, "path": ":memory:"}}, "in-memory one is per process"),
        ],
    )
    def test_per_process_state_is_refused_in_one_line(
        self, change: dict[str, dict[str, object]], named: str
    ) -> None:
        """Memory stores, local jobs, the locked embedded store: one ConfigError line naming the fix."""
        settings = shareable()
        for section, values in change.items():
            setattr(settings, section, getattr(settings, section).model_copy(update=values))
        with pytest.raises(ConfigError) as refused:
            check_shareable(settings)
        assert named in refused.value.message
        assert "\n" not in refused.value.message

    def test_replicas_refuse_the_answer_cache(self) -> None:
        """Read-only copies cannot hold the answer cache's writes."""
        settings = shareable(embedded_replicas=True)
        settings.qdrant = QdrantSettings(path="./data/qdrant")
        settings.cache = settings.cache.model_copy(update={"enabled": True})
        with pytest.raises(ConfigError, match="CHATBOT_CACHE__ENABLED=false"):
            check_shareable(settings)

    def test_the_command_line_refuses_before_binding(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`serve --workers 2` with in-memory state: exit code 2 and the one-line reason."""
        monkeypatch.setenv("CHATBOT_QDRANT__PATH", ":memory:")
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            assert main(["serve", "--workers", "2", "--port", "0"]) == 2
        finally:  # main() configured the root logger onto the captured stderr
            root.handlers[:] = handlers
            root.setLevel(level)
        err = capsys.readouterr().err
        assert err.startswith("error: serve --workers 2 needs state shared by every worker")
        assert err.count("\n") == 1


@pytest.mark.parametrize("workers", ["0", "-3", "65"])
def test_a_worker_count_out_of_range_is_refused(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`serve --workers 0` (or negative, or above 64): exit code 2 and one line, before anything starts."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert main(["serve", "--workers", workers]) == 2
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert err.startswith("error: --workers: "), err
    assert err.count("\n") == 1


async def test_a_read_only_copy_answers_reads_and_refuses_writes() -> None:
    """ReadOnlyStore: reads go through; upsert, relabel, deletes and a reindex get 409 store_read_only."""
    store = ReadOnlyStore(QdrantStore(QdrantSettings(path=":memory:", collection="copy")))
    await store.open()
    try:
        await store.ensure_collection("m", 4, sparse=False)
        assert await store.ping()
        assert not store.has_sparse
        assert await store.count("t") == 0
        assert await store.list_documents("t") == []
        assert await store.versions_of(["x"]) == {}
        assert await store.chunks("t", "d", 0, 3) == []
        assert await store.recorded_model() == "m"
        assert [c async for page in store.stream_chunks() for c in page] == []
        with pytest.raises(ChatbotError) as staged:
            store.staging("next")
        assert staged.value.code == "store_read_only"
        record = ChunkRecord(
            tenant="t",
            doc_id="d",
            source="s",
            title="t",
            heading_path=(),
            chunk_index=0,
            text="x",
            content_hash="h",
            version="1",
        )
        writes = [
            store.upsert([record], [[0.1, 0.2, 0.3, 0.4]], None),
            store.set_version(["x"], "2"),
            store.delete_stale("t", "d", "2"),
            store.delete_document("t", "d"),
            store.promote(store, lambda: None),
            store.discard(store),
        ]
        for write in writes:
            with pytest.raises(ChatbotError) as refused:
                await write
            assert (refused.value.code, refused.value.status) == ("store_read_only", 409)
    finally:
        await store.aclose()


def exit_with(code: int) -> None:
    sys.exit(code)


def drain_on_term(ready: Event) -> None:
    """A worker stand-in: SIGTERM ends it cleanly (exit 0), as serve()'s drain does."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready.set()
    time.sleep(60)


def test_a_worker_exiting_by_itself_stops_the_others() -> None:
    """One worker exits with 3: the other gets SIGTERM and the supervisor's exit code is 3."""
    ready = SPAWN.Event()
    started = time.monotonic()
    processes = [
        SPAWN.Process(target=drain_on_term, args=(ready,)),
        SPAWN.Process(target=exit_with, args=(3,)),
    ]
    assert supervise(processes) == 3
    assert time.monotonic() - started < 30
    assert processes[0].exitcode == 0  # asked to stop, not killed


def test_sigterm_reaches_every_worker_and_the_supervisor_waits_for_all() -> None:
    """SIGTERM to the supervisor: every worker gets it and exits 0; supervise returns 0; handlers restored."""
    events = [SPAWN.Event(), SPAWN.Event()]
    processes = [SPAWN.Process(target=drain_on_term, args=(event,)) for event in events]
    before = signal.getsignal(signal.SIGTERM)

    def terminate_when_ready() -> None:
        """SIGTERM to this process once both workers handle it; if they never got ready, stop them directly
        (the test then fails on their exit codes) rather than signal a process no longer supervising."""
        if all(event.wait(60) for event in events) and signal.getsignal(signal.SIGTERM) is not before:
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            for process in processes:
                process.kill()

    threading.Thread(target=terminate_when_ready, daemon=True).start()
    assert supervise(processes) == 0
    assert [p.exitcode for p in processes] == [0, 0]
    assert signal.getsignal(signal.SIGTERM) is before
