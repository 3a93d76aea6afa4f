"""Fake OpenAI and Cohere servers on 127.0.0.1 that the real SDKs talk to through base_url.

In a test (on the test's loop):

    async with FakeOpenAI() as fake:              # or FakeCohere(); both serve both APIs
        client = build_openai_client(OpenAISettings(api_key="k", base_url=fake.base_url))
        fake.reply = Reply(text="Hello [1].")
        fake.inject(Fault.drop_after(3))          # the next request is cut after 3 tokens
        ...
        record = await fake.wait_stream_closed(1.0)

`with FakeOpenAI() as fake:` runs the server on its own loop in a background thread instead.
A request may also carry `x-fake-fault: drop_after=3` (see Fault.parse).

Standalone, for benchmarks:  python -m tests.fakes.upstream --port 8900 --embed-ms 30 --first-token-ms 100 \
    --tokens 50 --token-ms 10      (OpenAI base_url http://127.0.0.1:8900/v1, Cohere base_url http://127.0.0.1:8900)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from . import cohere_api, openai_api
from .httpserver import Connection, HTTPServer, Request
from .scripting import Fault, Latency, Reply, StreamRecord, count_words

Frame = tuple[str, bytes]

KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
    "embed-v4.0": 1536,
}


class FakeUpstream:
    """Serves the OpenAI API under /v1 and the Cohere v2 API under /v2 on one random port."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: Latency | None = None,
        reply: Reply | None = None,
        dimensions: int | None = None,
        api_key: str | None = None,
        history: int | None = None,
    ) -> None:
        self.latency = latency or Latency()
        self.reply = reply or Reply()
        self.dimensions = dimensions  # None: by model name (KNOWN_DIMENSIONS), else 1024
        self.api_key = api_key  # if set, requests without `Authorization: Bearer <api_key>` get 401
        self.reverse_embeddings = False  # OpenAI: return data[] in reverse order (clients must sort by index)
        # what was asked and streamed, oldest first; `history` keeps only the latest N (long benchmark runs)
        self.requests: collections.deque[Request] = collections.deque(maxlen=history)
        self.streams: collections.deque[StreamRecord] = collections.deque(maxlen=history)
        self._faults: collections.deque[Fault] = collections.deque()
        self._http = HTTPServer(self._handle, host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._http.start()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        """Run on a private loop in a daemon thread (for callers without a running loop of their own)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None
        assert self._thread is not None
        asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # -- addresses and counters ------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._http.port}"

    @property
    def base_url(self) -> str:
        return self.origin

    @property
    def openai_base_url(self) -> str:
        return self.origin + "/v1"

    @property
    def cohere_base_url(self) -> str:
        return self.origin

    @property
    def open_connections(self) -> int:
        return self._http.open_connections

    @property
    def connections_total(self) -> int:
        return self._http.connections_total

    @property
    def handler_errors(self) -> list[BaseException]:
        return self._http.handler_errors

    # -- scripting -------------------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is consumed by the next request whose path starts with its `path`."""
        self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def _take_fault(self, request: Request) -> Fault | None:
        if header := request.headers.get("x-fake-fault"):
            return Fault.parse(header)
        for fault in self._faults:
            if request.path.startswith(fault.path):
                self._faults.remove(fault)
                return fault
        return None

    def requests_to(self, path: str) -> list[Any]:
        """JSON bodies of the requests sent to `path`, oldest first."""
        return [r.json() for r in self.requests if r.path == path]

    # -- waiting (polls, so it works from any loop or thread) ------------------------------------------

    async def wait_stream_closed(self, within: float = 1.0, index: int = -1) -> StreamRecord:
        """Wait until the client has closed stream `index` (default: the latest); return its record."""
        return await self._wait(
            lambda: self._record_if(index, "client_closed_at"), within, "closed by the client"
        )

    async def wait_stream_ended(self, within: float = 1.0, index: int = -1) -> StreamRecord:
        """Wait until stream `index` completed, was dropped or was closed by the client."""
        return await self._wait(lambda: self._record_if(index, "ended"), within, "ended")

    def _record_if(self, index: int, attribute: str) -> StreamRecord | None:
        try:
            record = self.streams[index]
        except IndexError:
            return None
        return record if getattr(record, attribute) else None

    async def _wait(self, probe: Callable[[], StreamRecord | None], within: float, what: str) -> StreamRecord:
        deadline = time.monotonic() + within
        while (found := probe()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no stream {what} within {within} s; streams={self.streams}")
            await asyncio.sleep(0.002)
        return found

    # -- serving ---------------------------------------------------------------------------------------

    def _dimensions(self, model: str) -> int:
        return self.dimensions or KNOWN_DIMENSIONS.get(model, 1024)

    async def _handle(self, conn: Connection, request: Request) -> None:
        self.requests.append(request)
        fault = self._take_fault(request)
        openai = request.path.startswith("/v1/")
        if fault is not None and fault.kind == "slow_headers" and not await conn.sleep(fault.seconds):
            return
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            fault = Fault.http_status(401)
        if fault is not None and fault.kind == "status":
            body = openai_api.error_body(fault.status) if openai else cohere_api.error_body(fault.status)
            headers = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
            await conn.send_json(fault.status, body, headers)
            return
        route = {
            ("POST", "/v1/embeddings"): self._openai_embeddings,
            ("POST", "/v1/chat/completions"): self._openai_chat,
            ("POST", "/v2/embed"): self._cohere_embed,
            ("POST", "/v2/rerank"): self._cohere_rerank,
            ("POST", "/v2/chat"): self._cohere_chat,
        }.get((request.method, request.path))
        if route is None:
            await conn.send_json(404, {"error": {"message": f"no route {request.method} {request.path}"}})
            return
        await route(conn, request, fault)

    async def _send_unary(self, conn: Connection, fault: Fault | None, delay_ms: float, obj: Any) -> None:
        """A non-streaming answer, with the faults that make sense for one."""
        if not await conn.sleep(
            delay_ms / 1000 + (fault.seconds if fault and fault.kind == "slow_first_chunk" else 0)
        ):
            return
        if fault is not None and fault.kind == "drop_after":
            conn.drop()
        elif fault is not None and fault.kind == "malformed_after":
            await conn.send(200, b'{"object": "list", "data": [')
        else:
            await conn.send_json(200, obj)

    async def _openai_embeddings(self, conn: Connection, request: Request, fault: Fault | None) -> None:
        body = request.json()
        answer = openai_api.embeddings(
            body, self._dimensions(body.get("model", "")), reverse=self.reverse_embeddings
        )
        await self._send_unary(conn, fault, self.latency.embed_ms, answer)

    async def _cohere_embed(self, conn: Connection, request: Request, fault: Fault | None) -> None:
        body = request.json()
        status, answer = cohere_api.embed(body, self._dimensions(body.get("model", "")))
        if status != 200:
            await conn.send_json(status, answer)
            return
        await self._send_unary(conn, fault, self.latency.embed_ms, answer)

    async def _cohere_rerank(self, conn: Connection, request: Request, fault: Fault | None) -> None:
        await self._send_unary(conn, fault, self.latency.rerank_ms, cohere_api.rerank(request.json()))

    def _prompt_tokens(self, text: str) -> int:
        return self.reply.prompt_tokens if self.reply.prompt_tokens is not None else count_words(text)

    async def _openai_chat(self, conn: Connection, request: Request, fault: Fault | None) -> None:
        body = request.json()
        reply = self.reply
        pieces, prompt_tokens = reply.pieces(), self._prompt_tokens(openai_api.prompt_text(body))
        if not body.get("stream"):
            delay = self.latency.first_token_ms + self.latency.token_ms * max(len(pieces) - 1, 0)
            answer = openai_api.completion(body, pieces, prompt_tokens, reply.finish_reason)
            await self._send_unary(conn, fault, delay, answer)
            return
        model = str(body.get("model", ""))
        frames = openai_api.chat_frames(
            body, pieces, prompt_tokens, reply.finish_reason, send_usage=reply.usage
        )
        await self._stream(
            conn,
            request,
            "openai",
            frames,
            fault,
            openai_api.MALFORMED,
            lambda text: openai_api.token_event(model, text),
        )

    async def _cohere_chat(self, conn: Connection, request: Request, fault: Fault | None) -> None:
        body = request.json()
        reply = self.reply
        pieces, prompt_tokens = reply.pieces(), self._prompt_tokens(cohere_api.prompt_text(body))
        if not body.get("stream"):
            delay = self.latency.first_token_ms + self.latency.token_ms * max(len(pieces) - 1, 0)
            await self._send_unary(
                conn, fault, delay, cohere_api.chat_response(pieces, prompt_tokens, reply.finish_reason)
            )
            return
        frames = cohere_api.chat_frames(pieces, prompt_tokens, reply.finish_reason, send_usage=reply.usage)
        await self._stream(
            conn, request, "cohere", frames, fault, cohere_api.MALFORMED, cohere_api.token_event
        )

    async def _stream(
        self,
        conn: Connection,
        request: Request,
        api: str,
        frames: list[Frame],
        fault: Fault | None,
        malformed: bytes,
        token_event: Callable[[str], bytes],
    ) -> None:
        """Send SSE frames with the configured latency; tokens wait, meta events go out at once."""
        record = StreamRecord(
            api=api, path=request.path, started_at=request.received_at, request_json=request.json()
        )
        self.streams.append(record)

        def on_eof(at: float) -> None:
            if not record.completed and not record.dropped:
                record.client_closed_at = at

        conn.on_eof = on_eof
        if conn.client_closed:  # closed while we slept before the headers
            on_eof(conn.eof_at or time.monotonic())
            return
        try:
            await conn.start_stream()
            record.headers_at = time.monotonic()
            delay = self.latency.first_token_ms / 1000
            if fault is not None and fault.kind == "slow_first_chunk":
                delay += fault.seconds
            n_tokens = sum(1 for kind, _ in frames if kind == "token")
            drop_at = (
                min(fault.tokens, n_tokens) if fault is not None and fault.kind == "drop_after" else None
            )
            for kind, data in frames:
                # drop before token K+1 or, when K covers every token, before the frames that end the stream
                if record.tokens == drop_at and (kind == "token" or drop_at == n_tokens):
                    record.dropped = True
                    conn.drop()
                    return
                if kind == "token":
                    if fault is not None and fault.tokens == record.tokens:
                        if fault.kind == "malformed_after":
                            await conn.send_chunk(malformed)
                            record.events += 1
                        elif fault.kind == "oversized_after":
                            await conn.send_chunk(token_event("x" * fault.size))
                            record.events += 1
                    if not await conn.sleep(delay):
                        return
                    delay = self.latency.token_ms / 1000
                    record.tokens += 1
                    record.first_token_at = record.first_token_at or time.monotonic()
                await conn.send_chunk(data)
                record.events += 1
            await conn.end_stream()
            record.completed, record.completed_at = True, time.monotonic()
        finally:
            conn.on_eof = None


class FakeOpenAI(FakeUpstream):
    """`base_url` is the OpenAI one (…/v1)."""

    @property
    def base_url(self) -> str:
        return self.openai_base_url


class FakeCohere(FakeUpstream):
    """`base_url` is the Cohere one (the origin; the SDK adds /v2/...)."""

    @property
    def base_url(self) -> str:
        return self.cohere_base_url


async def _serve(args: argparse.Namespace) -> None:
    latency = Latency(args.embed_ms, args.rerank_ms, args.first_token_ms, args.token_ms)
    reply = Reply(text=args.reply, tokens=args.tokens) if args.reply else Reply(tokens=args.tokens)
    fake = FakeUpstream(
        host=args.host, port=args.port, latency=latency, reply=reply, dimensions=args.dimensions, history=1000
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        sys.stdout.write(
            f"fake upstream on {fake.origin}: "
            f"OpenAI base_url {fake.openai_base_url}, Cohere base_url {fake.cohere_base_url}\n"
        )
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.upstream", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--embed-ms", type=float, default=0.0, help="delay of each embedding request")
    parser.add_argument("--rerank-ms", type=float, default=0.0, help="delay of each rerank request")
    parser.add_argument("--first-token-ms", type=float, default=0.0, help="delay before the first token")
    parser.add_argument("--token-ms", type=float, default=0.0, help="delay before each later token")
    parser.add_argument(
        "--tokens", type=int, default=None, help="tokens per reply (default: the default reply's)"
    )
    parser.add_argument("--reply", default="", help="reply text (default: a fixed answer citing [1])")
    parser.add_argument(
        "--dimensions", type=int, default=None, help="embedding size (default: by model name)"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
