"""Crash-safe ingestion: `python -m chatbot ingest` killed with SIGKILL at seeded random points, then rerun.

CI size: 20 kill/rerun trials on 6 documents of ~10 chunks. Full size:
`CRASH_RUNS=200 .venv/bin/python -m pytest tests/reliability/test_crash_ingest.py` (or `make crash-ingest`,
or `.venv/bin/python scripts/crash_ingest.py --runs 200`). CRASH_SEED picks another reproducible run.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from chatbot.providers.registry import Providers
from tests.reliability.conftest import artifacts_dir
from tests.reliability.crash import Lane, run_lanes

SEED = int(os.environ.get("CRASH_SEED", "7"))
RUNS = int(os.environ.get("CRASH_RUNS", "20"))


class TestCrashIngest:
    @pytest.mark.timeout(max(240, RUNS * 12))
    async def test_killed_runs_converge_to_every_chunk_exactly_once(
        self, tmp_path: Path, offline_providers: Providers
    ) -> None:
        """SIGKILL mid-ingest, change or delete documents, rerun: exactly the current chunks, one version."""
        tally = await run_lanes(tmp_path, offline_providers, seed=SEED, runs=RUNS)
        report = {"seed": SEED, "runs": RUNS, **tally.__dict__, "crash_states": dict(tally.crash_states)}
        (artifacts_dir() / "crash-ingest.json").write_text(json.dumps(report, indent=2))
        print(f"\ncrash ingest: {report}")  # noqa: T201
        assert tally.trials == RUNS
        assert tally.killed >= RUNS // 2, "most kills should land inside the ingestion"

    async def test_another_embedder_on_the_same_path_is_refused(
        self, tmp_path: Path, offline_providers: Providers
    ) -> None:
        """After a kill, another embedding model on the same path: embedding_mismatch, nothing written."""
        lane = Lane(tmp_path, random.Random(1), offline_providers, docs=2)
        code, _, _ = await lane.run_cli("ingest", str(lane.docs_dir), kill_after=0.3)
        await lane.ingest_here()
        before = await lane.inventory()
        lane.write("doc0.md")
        env_model = {"CHATBOT_EMBEDDING_PROVIDER": "openai", "OPENAI_API_KEY": "sk-test"}
        code, err = await _run_with(lane, env_model, "ingest", str(lane.docs_dir))
        assert code == 1
        assert "embedding_mismatch" in err
        assert await lane.inventory() == before
        assert await lane.dense_model() == offline_providers.embedder.name

    async def test_deleting_a_document_removes_all_its_chunks(
        self, tmp_path: Path, offline_providers: Providers
    ) -> None:
        """`documents delete` removes every chunk of that document and no other."""
        lane = Lane(tmp_path, random.Random(2), offline_providers, docs=3)
        await lane.ingest_here()
        stored = await lane.inventory()
        doc_id = lane.delete_file("doc1.md")
        assert len(stored[doc_id]) >= 7
        await lane.delete_document(doc_id, via_cli=True)
        after = await lane.inventory()
        assert doc_id not in after
        assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in stored.items() if k != doc_id}
        await lane.check_complete()


async def _run_with(lane: Lane, extra_env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the CLI in the lane's environment plus `extra_env`; (exit code, stderr)."""
    import asyncio

    from tests.reliability.crash import ROOT, cli_env

    proc = await asyncio.create_subprocess_exec(
        *lane.cli(*args),
        env={**cli_env(lane.qdrant), **extra_env},
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")
