"""Processes of a benchmark run: start, wait for a port, read CPU and memory from /proc, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, within: float = 60.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll `url` until it answers 200 (loopback only)."""
    assert url.startswith("http://127.0.0.1:"), url
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
            if r.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {within}s")


def wait_port(port: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {within}s")


def http_json(method: str, url: str) -> Any:
    import json

    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, method=method)  # noqa: S310 - loopback URL checked above
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
        return json.loads(r.read())


@contextlib.contextmanager
def started(
    args: list[str], env: Mapping[str, str] | None = None, *, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own process group; SIGTERM (then SIGKILL) to that group on exit."""
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if log and hasattr(out, "close"):
            out.close()


def children(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _cpu_of(stat_path: Path) -> float:
    stat = stat_path.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


@dataclass(frozen=True)
class CpuSample:
    total: float  # seconds of CPU of the processes (and their threads)
    loop: float  # seconds of CPU of the processes' main threads (the event loop, for the async server)


def cpu(pids: list[int]) -> CpuSample:
    total = loop = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _cpu_of(Path(f"/proc/{pid}/stat"))
            loop += _cpu_of(Path(f"/proc/{pid}/task/{pid}/stat"))
    return CpuSample(total, loop)


def peak_rss_mb(pids: list[int]) -> float:
    """Sum of VmHWM of the processes, in MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "cache"


def fast_tmp() -> str | None:
    """tmpfs when there is one: local-mode Qdrant commits every point to sqlite."""
    shm = "/dev/shm"  # noqa: S108 - a private mkdtemp below it, removed after the run
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def cached_store(
    name: str, env: Mapping[str, str], chunks: int, log: Path, rebuild: bool
) -> tuple[Path, dict[str, Any]]:
    """A collection built once by the product's ingestion path (bench/setup_store.py, under `env`, whose
    CHATBOT_QDRANT__PATH is replaced) and cached in bench/results/cache/<name>: (folder, setup figures)."""
    import json
    import shutil
    import tempfile

    folder = CACHE / name
    meta_file = folder / "bench-setup.json"
    if meta_file.exists() and not rebuild:
        meta = json.loads(meta_file.read_text())
        return folder, {**meta, "cached": True}
    shutil.rmtree(folder, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix="chatbot-bench-build-", dir=fast_tmp()))
    print(f"building the {chunks}-chunk collection (once; cached in {folder}) ...", flush=True)
    out = subprocess.run(  # noqa: S603 - our own module
        [PYTHON, "-m", "bench.setup_store", "--chunks", str(chunks)],
        cwd=ROOT,
        env={**os.environ, **env, "CHATBOT_QDRANT__PATH": str(building / "qdrant")},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    with log.open("a") as f:
        f.write(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"setup_store failed: {out.stderr[-2000:]}")
    meta = json.loads(out.stdout.strip().splitlines()[-1])
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(building / "qdrant", folder)
    meta_file.write_text(json.dumps(meta))
    shutil.rmtree(building, ignore_errors=True)
    return folder, {**meta, "cached": False}
