"""Server RSS while N clients send chunked (no Content-Length) bodies to a JSON route (issue 14, item 1).

    PYTHONPATH=$PWD python -m bench.body_memory [--clients 10] [--mib 40] [--code /path/to/a/checkout]

`python -m chatbot serve` (the code under --code, default this checkout) runs on 127.0.0.1 against the fake
upstream; each client streams --mib MiB of chunks to POST /v1/chat as fast as the server takes them, never
ending the body. Prints the server's RSS before, at its peak while the bodies arrive, and what each client got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.reliability.soak import ROOT, fake_upstream_process, rss_kb
from tests.serving import free_port


async def send_chunked(url: str, mib: int) -> str:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    status = asyncio.ensure_future(reader.readline())
    sent = 0
    try:
        for _ in range(mib * 16):
            if status.done():
                break
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 30)
            sent += 0x10000
        line = await asyncio.wait_for(status, 30)
        return f"{line.decode().strip()!r} after {sent >> 10} KiB sent"
    except (OSError, TimeoutError) as exc:
        return f"{type(exc).__name__} after {sent >> 10} KiB sent"
    finally:
        status.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def main(clients: int, mib: int, code: Path) -> None:
    async with fake_upstream_process() as base_url:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_"))}
        env.update(
            PYTHONPATH=str(code),
            OPENAI_API_KEY="sk-bench",
            CHATBOT_OPENAI__BASE_URL=base_url,
            CHATBOT_OPENAI__EMBEDDING_DIMENSIONS="256",
            CHATBOT_EMBEDDING_PROVIDER="openai",
            CHATBOT_CHAT_PROVIDER="openai",
            CHATBOT_SERVER__INGEST_ON_START="false",
            CHATBOT_LOG_LEVEL="WARNING",
        )
        with tempfile.TemporaryDirectory() as data:
            env["CHATBOT_QDRANT__PATH"] = str(Path(data) / "qdrant")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chatbot", "serve", "--port", str(port), cwd=code, env=env,
                stdout=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    for _ in range(600):
                        with contextlib.suppress(httpx.HTTPError):
                            if (await client.get(f"{url}/healthz")).status_code == 200:
                                break
                        await asyncio.sleep(0.05)
                before = rss_kb(proc.pid)
                peak = before
                started = time.perf_counter()
                sends = asyncio.gather(*(send_chunked(url, mib) for _ in range(clients)))
                while not sends.done():
                    peak = max(peak, rss_kb(proc.pid))
                    await asyncio.sleep(0.05)
                results = await sends
                print(f"code: {code}; {clients} clients x {mib} MiB chunked to POST /v1/chat")
                print(f"server RSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB, "
                      f"growth {(peak - before) / 1024:.0f} MiB; {time.perf_counter() - started:.1f} s")  # fmt: skip
                for line in sorted(set(results)):
                    print(f"  {results.count(line)} x {line}")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--mib", type=int, default=40)
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.mib, args.code.resolve()))
