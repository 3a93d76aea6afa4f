"""Closed-loop chat clients in their own process: N conversations, each asks, reads the streamed answer to
its end, and asks again. Over the native websocket (/v1/ws) or SSE (POST /v1/chat with stream=true).

    python -m bench.load --url http://127.0.0.1:8000 --transport ws --concurrency 10 --duration 10 --out f.json

Prints `measure-start` when the warm-up ends and `measure-end` when the measured window ends (the caller
samples the server then), and finally one JSON line of figures for the turns asked inside the window:
time to first token (send -> first token frame), gaps between token frames, turns completed in the window.
Every loop is bounded by time and by --max-turns. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.corpus import questions

TERMINAL = ("done", "error", "stopped")
NO_COMPRESSION = False  # set by --no-compression
THINK = 0.0  # seconds a conversation pauses between an answer and its next question (--think)


@dataclass
class Figures:
    ttft: list[float] = field(default_factory=list)  # seconds, turns asked inside the window
    gaps: list[float] = field(default_factory=list)  # seconds between token frames of those turns
    completed: int = 0  # turns whose terminal frame arrived inside the window
    tokens_frames: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    turns_total: int = 0


class Window:
    def __init__(self, warmup: float, duration: float) -> None:
        now = time.perf_counter()
        self.start = now + warmup
        self.end = self.start + duration

    def inside(self, t: float) -> bool:
        return self.start <= t < self.end


def record(fig: Figures, win: Window, sent: float, frames: list[float], ended: float, outcome: str) -> None:
    fig.turns_total += 1
    if outcome != "done":
        fig.errors[outcome] = fig.errors.get(outcome, 0) + 1
    if win.inside(ended):
        fig.completed += 1
    if win.inside(sent) and frames:
        fig.ttft.append(frames[0] - sent)
        fig.gaps.extend(b - a for a, b in itertools.pairwise(frames))
        fig.tokens_frames += len(frames)


async def think() -> None:
    """The pause between turns of a paced conversation (none for a closed loop)."""
    if THINK > 0:
        await asyncio.sleep(THINK)


# -- websocket --------------------------------------------------------------------------------------------


async def ws_conversation(url: str, qs: list[str], fig: Figures, win: Window, budget: list[int]) -> None:
    from websockets.asyncio.client import connect

    ws_url = "ws://" + urlsplit(url).netloc + "/v1/ws"
    # like a browser, the client offers permessage-deflate unless --no-compression
    compression = None if NO_COMPRESSION else "deflate"
    async with connect(
        ws_url, max_size=2**22, open_timeout=30, ping_interval=None, compression=compression
    ) as ws:
        i = 0
        while time.perf_counter() < win.end and budget[0] > 0:
            if i:
                await think()
            budget[0] -= 1
            question = qs[i % len(qs)]
            i += 1
            frames: list[float] = []
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "ask", "message": question}))
            outcome = "timeout"
            async with asyncio.timeout(60):
                while True:
                    raw = await ws.recv()
                    now = time.perf_counter()
                    if raw.startswith('{"type":"token"'):
                        frames.append(now)
                        continue
                    kind = json.loads(raw)["type"]
                    if kind in TERMINAL:
                        outcome = kind if kind == "done" else f"{kind}:{json.loads(raw).get('code', '')}"
                        break
            record(fig, win, sent, frames, time.perf_counter(), outcome)


# -- SSE over a minimal keep-alive HTTP/1.1 client (cheap, so the client does not steal the server's CPU) ---


async def _read_chunked_events(reader: asyncio.StreamReader, on_event: Any) -> None:
    """Read a chunked body, calling on_event(event_name) per SSE event, until the last chunk."""
    buffer = b""
    while True:
        size_line = await reader.readline()
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return
        buffer += await reader.readexactly(size)
        await reader.readexactly(2)
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            name = b""
            for line in event.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:]
            on_event(name.decode(), event)


async def sse_conversation(url: str, qs: list[str], fig: Figures, win: Window, budget: list[int]) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        i = 0
        while time.perf_counter() < win.end and budget[0] > 0:
            if i:
                await think()
            budget[0] -= 1
            body = json.dumps({"message": qs[i % len(qs)], "stream": True}).encode()
            i += 1
            head = (
                f"POST /v1/chat HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            frames: list[float] = []
            outcome = ["timeout"]
            sent = time.perf_counter()
            writer.write(head + body)

            def on_event(
                name: str, event: bytes, frames: list[float] = frames, outcome: list[str] = outcome
            ) -> None:
                if name == "token":
                    frames.append(time.perf_counter())
                elif name in TERMINAL:
                    if name == "done":
                        outcome[0] = "done"
                    else:
                        data = event.split(b"data: ", 1)[-1]
                        outcome[0] = f"{name}:{json.loads(data).get('code', '')}"

            async with asyncio.timeout(60):
                status = await reader.readline()
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    k, _, v = line.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if b" 200" not in status:
                    length = int(headers.get("content-length", "0"))
                    await reader.readexactly(length)
                    outcome[0] = "http_" + status.split()[1].decode()
                elif headers.get("transfer-encoding") == "chunked":
                    await _read_chunked_events(reader, on_event)
                else:
                    raise RuntimeError(f"unexpected response headers: {headers}")
            record(fig, win, sent, frames, time.perf_counter(), outcome[0])
            if outcome[0].startswith("http_"):
                await asyncio.sleep(0.05)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# -- driver -----------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    assert urlsplit(args.url).hostname == "127.0.0.1", "loopback only"
    win = Window(args.warmup, args.duration)
    fig = Figures()
    budget = [args.max_turns]
    qs = questions(500)
    conversation = ws_conversation if args.transport == "ws" else sse_conversation

    async def one(k: int) -> None:
        # stagger the first asks (paced conversations spread over one think time)
        spread = THINK / max(args.concurrency, 1) if THINK > 0 else min(0.01, 1.0 / max(args.concurrency, 1))
        await asyncio.sleep(k * spread)
        try:
            await conversation(args.url, qs[k:] + qs[:k], fig, win, budget)
        except Exception as exc:  # a broken conversation is counted, the others go on
            key = f"client:{type(exc).__name__}"
            fig.errors[key] = fig.errors.get(key, 0) + 1

    async def markers() -> None:
        await asyncio.sleep(max(0.0, win.start - time.perf_counter()))
        print("measure-start", flush=True)
        await asyncio.sleep(max(0.0, win.end - time.perf_counter()))
        print("measure-end", flush=True)

    marker_task = asyncio.create_task(markers())
    async with asyncio.timeout(args.warmup + args.duration + 90):
        await asyncio.gather(*(one(k) for k in range(args.concurrency)))
    await marker_task
    return {
        "transport": args.transport,
        "concurrency": args.concurrency,
        "duration": args.duration,
        "think": THINK,
        "ttft": fig.ttft,
        "gaps": fig.gaps,
        "completed": fig.completed,
        "token_frames": fig.tokens_frames,
        "turns_total": fig.turns_total,
        "errors": fig.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--transport", choices=["ws", "sse"], required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-turns", type=int, default=100_000)
    parser.add_argument(
        "--no-compression", action="store_true", help="websocket: do not offer permessage-deflate"
    )
    parser.add_argument(
        "--think", type=float, default=0.0, help="seconds each conversation pauses between turns"
    )
    parser.add_argument("--out", required=True, help="write the figures (JSON) to this file")
    args = parser.parse_args()
    global NO_COMPRESSION, THINK
    NO_COMPRESSION = args.no_compression
    THINK = max(0.0, args.think)
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    # a file, not a stdout line: a 70 KB line read from the pipe once arrived cut (JSONDecodeError mid-run)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
