"""The CLI beside a running server on the same embedded store: the work goes through the server's API,
the summary is the same, and nothing prints a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli_env(store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CHATBOT_EMBEDDING_PROVIDER="local",
        CHATBOT_CHAT_PROVIDER="extractive",
        CHATBOT_QDRANT__PATH=str(store),
        CHATBOT_SERVER__INGEST_ON_START="false",
        CHATBOT_SERVER__UVLOOP="false",
        CHATBOT_LOG_LEVEL="WARNING",
        CHATBOT_JOBS__STATE_DIR=str(store.parent / "sync"),
        **extra,
    )
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "chatbot", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """`python -m chatbot serve` on an embedded store in a subprocess; yields its URL and environment."""
    store = tmp_path_factory.mktemp("cli-server") / "qdrant"
    port = free_port()
    env = cli_env(store, CHATBOT_SERVER__PORT=str(port))
    log = (store.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (store.parent / "serve.log").read_text()
            time.sleep(0.1)
        yield url, env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert not Path(str(store) + ".server.json").exists(), "the server file is removed on exit"


def write_docs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alpha.md").write_text("# Alpha\n\nThe alpha document explains the wobble factor.\n")
    (folder / "beta.txt").write_text("Beta notes: the frobnicator needs two volts.\n")


class TestCliWithServer:
    def test_server_announces_itself(self, server: tuple[str, dict[str, str]]) -> None:
        """serve writes <store>.server.json with its URL and pid beside the embedded store."""
        url, env = server
        announced = json.loads(Path(env["CHATBOT_QDRANT__PATH"] + ".server.json").read_text())
        assert announced["url"] == url
        assert isinstance(announced["pid"], int)

    def test_ingest_goes_through_the_server(self, server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
        """`ingest DIR` while the server holds the store: the summary, no traceback, documents in the server."""
        url, env = server
        write_docs(tmp_path / "docs")
        done = cli(env, "ingest", str(tmp_path / "docs"), "--tenant", "cli-a")
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "2 files, " in done.stdout
        assert f"through the server at {url}" in done.stderr
        listed = httpx.get(url + "/v1/documents", headers={"X-Chatbot-Tenant": "cli-a"}).json()["documents"]
        assert {d["source"] for d in listed} == {"alpha.md", "beta.txt"}

    def test_documents_list_and_delete_through_the_server(
        self, server: tuple[str, dict[str, str]], tmp_path: Path
    ) -> None:
        """`documents list` and `documents delete` work while the server runs."""
        _, env = server
        write_docs(tmp_path / "docs")
        assert cli(env, "ingest", str(tmp_path / "docs"), "--tenant", "cli-b").returncode == 0
        listed = cli(env, "documents", "list", "--tenant", "cli-b")
        assert listed.returncode == 0, listed.stderr
        doc_id = listed.stdout.split()[0]
        deleted = cli(env, "documents", "delete", doc_id, "--tenant", "cli-b")
        assert deleted.returncode == 0, deleted.stderr
        assert "deleted " in deleted.stdout
        assert "deleted 0 " not in deleted.stdout

    def test_sync_through_the_server(self, server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
        """`sync DIR` while the server runs: a second run changes nothing, a removed file is deleted."""
        _, env = server
        write_docs(tmp_path / "docs")
        first = cli(env, "sync", str(tmp_path / "docs"), "--tenant", "cli-c")
        assert first.returncode == 0, first.stderr
        assert "2 files: 2 ingested" in first.stdout
        (tmp_path / "docs" / "beta.txt").unlink()
        second = cli(env, "sync", str(tmp_path / "docs"), "--tenant", "cli-c")
        assert second.returncode == 0, second.stderr
        assert "1 files: 0 ingested, 1 unchanged" in second.stdout
        assert "0 chunks deleted" not in second.stdout

    def test_held_store_without_a_server_is_a_clear_error(
        self, server: tuple[str, dict[str, str]], tmp_path: Path
    ) -> None:
        """With the server file gone (an unknown holder), the CLI says the store is in use: exit 2, no traceback."""
        _, env = server
        announced = Path(env["CHATBOT_QDRANT__PATH"] + ".server.json")
        saved = announced.read_text()
        announced.unlink()
        try:
            write_docs(tmp_path / "docs")
            for args in (("ingest", str(tmp_path / "docs")), ("documents", "list")):
                done = cli(env, *args)
                assert done.returncode == 2, done.stderr
                assert "Traceback" not in done.stderr
                assert "in use by another process" in done.stderr
                assert "--server" in done.stderr
        finally:
            announced.write_text(saved)

    def test_ask_while_the_server_holds_the_store(self, server: tuple[str, dict[str, str]]) -> None:
        """`ask` needs the store itself: a one-line 'in use' error, exit 2, no traceback."""
        _, env = server
        done = cli(env, "ask", "hello?")
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "in use by another process" in done.stderr

    def test_an_unreachable_server_is_a_clear_error(self, tmp_path: Path) -> None:
        """--server naming nothing that listens: a one-line error, exit 2, no traceback."""
        env = cli_env(tmp_path / "qdrant")
        write_docs(tmp_path / "docs")
        done = cli(env, "ingest", str(tmp_path / "docs"), "--server", f"http://127.0.0.1:{free_port()}")
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert "cannot be reached" in done.stderr
