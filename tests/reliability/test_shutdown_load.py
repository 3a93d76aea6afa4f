"""SIGTERM under load exits within server.shutdown_seconds (issue 14, "Shutdown under load"): `python -m chatbot
serve` with 50 conversations streaming slowly (25 websocket, 25 SSE) from a fake upstream, then SIGTERM. The
whole exit (answers drained, websockets closed, hypercorn's graceful close, stores closed) fits the budget, and
every client gets a terminal event or a 1012 close."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import httpx
import websockets

from tests.reliability.soak import Server, fake_upstream_process, served

SHUTDOWN_SECONDS = 4.0
MARGIN_SECONDS = 1.0  # the interpreter's own exit, the signal's delivery
CONVERSATIONS = 50
TERMINAL = {"done", "stopped", "error"}


async def ws_conversation(server: Server, streaming: asyncio.Event) -> str:
    """One websocket ask; how it ended: 'event:<terminal type>', 'close:<code>' or what broke."""
    try:
        async with websockets.connect(server.ws_url, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "ask", "message": "How do I stop an answer?"}))
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "token":
                    streaming.set()
                if frame["type"] in TERMINAL:
                    return f"event:{frame['type']}:{frame.get('code', '')}"
    except websockets.ConnectionClosed as closed:
        return f"close:{closed.rcvd.code if closed.rcvd else 'none'}"


async def sse_conversation(server: Server, streaming: asyncio.Event) -> str:
    """One SSE ask; how it ended: 'event:<terminal event>' or what broke."""
    body = {"message": "How do I resume a stream?", "stream": True}
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(30, connect=10)) as client,
            client.stream("POST", f"{server.url}/v1/chat", json=body) as response,
        ):
            async for line in response.aiter_lines():
                if line == "event: token":
                    streaming.set()
                if line.startswith("event: ") and line[7:] in TERMINAL:
                    return f"event:{line[7:]}"
        return "ended without a terminal event"
    except httpx.HTTPError as exc:
        return f"broken:{type(exc).__name__}"


async def test_sigterm_under_load_exits_within_the_budget(tmp_path: Path) -> None:
    """50 slow conversations, SIGTERM: exit within shutdown_seconds + margin; each client saw its end."""
    env = {
        "CHATBOT_SERVER__SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
        "CHATBOT_STREAM__HEARTBEAT_SECONDS": "1",
    }
    async with (
        fake_upstream_process(token_ms=200, tokens=600) as base_url,  # 2 minutes per answer
        served(base_url, tmp_path, env) as server,
    ):
        started = [asyncio.Event() for _ in range(CONVERSATIONS)]
        clients = [
            asyncio.create_task((ws_conversation if n % 2 else sse_conversation)(server, started[n]))
            for n in range(CONVERSATIONS)
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
        await asyncio.sleep(1.0)  # every answer is mid-stream
        assert not any(c.done() for c in clients)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.process.wait(), 60)
        exit_seconds = time.monotonic() - signalled
        outcomes = await asyncio.wait_for(asyncio.gather(*clients), 10)
    summary = (
        f"exit after SIGTERM: {exit_seconds:.1f} s (budget {SHUTDOWN_SECONDS} s); outcomes: "
        + ", ".join(f"{outcomes.count(o)} x {o}" for o in sorted(set(outcomes)))
    )
    assert server.process.returncode is not None, summary
    assert exit_seconds <= SHUTDOWN_SECONDS + MARGIN_SECONDS, summary
    assert all(o.startswith("event:") or o == "close:1012" for o in outcomes), outcomes
