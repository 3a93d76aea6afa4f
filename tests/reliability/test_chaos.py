"""Seeded fault injection across websocket, SSE, REST, the OpenAI-compatible API and the AI SDK stream.

Each turn draws a scenario from the seed: a clean answer, an upstream fault (429 with Retry-After, 500, 503,
slow headers or slow first chunk past the first-token deadline, a drop mid-stream, a malformed or oversized
chunk, a failing embedding request), a refused connection (a second app whose model URL is a closed port),
the vector store down (ScriptedOutageStore), or a client's mistake. Every turn must end in the scenario's
outcome with exactly one terminal, within the per-turn timeout; afterwards no upstream stream is left open,
no answer runs, no task is left, and a clean turn still works on every transport.

CI size: 240 turns. Full size: `CHAOS_TURNS=1000 .venv/bin/python -m pytest tests/reliability/test_chaos.py`
(or `make chaos`); CHAOS_SEED picks another reproducible run. The tally goes to tests/artifacts/chaos.json.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from chatbot.errors import status_for_code
from chatbot.providers.base import Embedder
from chatbot.providers.local_models import BM25SparseEmbedder
from chatbot.providers.openai_models import OpenAIChatModel, OpenAIEmbedder, build_openai_client
from chatbot.providers.registry import Providers
from chatbot.settings import OpenAISettings, QdrantSettings
from chatbot.wiring import Services
from tests.conftest import make_settings
from tests.fakes.scripting import Latency, Reply
from tests.reliability.conftest import (
    DOWN_TENANT,
    MarkedFaultUpstream,
    ScriptedOutageStore,
    artifacts_dir,
    chaos_mark,
    open_store,
    serve_services,
    tally_line,
)
from tests.serving import free_port
from tests.transport.clients import parse_sse, ws_url

SEED = int(os.environ.get("CHAOS_SEED", "20261125"))
TURNS = int(os.environ.get("CHAOS_TURNS", "240"))
WORKERS = int(os.environ.get("CHAOS_WORKERS", "4"))
TURN_TIMEOUT = 20.0
DIMENSIONS = 64
FIRST_TOKEN_DEADLINE = 0.5
TRANSPORTS = ("ws", "sse", "rest", "openai", "openai_stream", "ui")
END_TYPES = {"done", "stopped", "error"}
CLIENT_ERRORS = {
    "invalid_json",
    "validation_error",
    "unknown_frame_type",
    "empty_message",
    "message_too_long",
    "unknown_conversation",
    "model_not_found",
    "no_messages",
    "last_message_not_user",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: int
    expect: frozenset[str]  # "done" or the error codes the turn may end with
    mark: str = ""
    app: str = "main"  # "dead": the app whose chat model points at a closed port
    tenant: str = "public"


def _one(code: str) -> frozenset[str]:
    return frozenset({code})


SCENARIOS = (
    Scenario("clean", 24, _one("done")),
    Scenario("429", 6, _one("upstream_rate_limited"), chaos_mark("chat", "status=429;retry_after=2")),
    Scenario("500", 6, _one("upstream_unavailable"), chaos_mark("chat", "status=500")),
    Scenario("503", 6, _one("upstream_unavailable"), chaos_mark("chat", "status=503")),
    Scenario("refused", 6, _one("upstream_unavailable"), app="dead"),
    Scenario("slow_headers", 4, _one("first_token_timeout"), chaos_mark("chat", "slow_headers=3")),
    Scenario("slow_first_chunk", 4, _one("first_token_timeout"), chaos_mark("chat", "slow_first_chunk=3")),
    Scenario("drop", 6, _one("upstream_unavailable"), chaos_mark("chat", "drop_after=4")),
    Scenario("malformed", 6, _one("upstream_bad_response"), chaos_mark("chat", "malformed_after=3")),
    Scenario("oversized_256k", 3, _one("done"), chaos_mark("chat", "oversized_after=2;size=262144")),
    Scenario(
        "oversized_2m", 3, _one("upstream_bad_response"), chaos_mark("chat", "oversized_after=2;size=2097152")
    ),
    Scenario("embed_500", 5, _one("upstream_unavailable"), chaos_mark("embed", "status=500")),
    Scenario("embed_malformed", 3, _one("upstream_bad_response"), chaos_mark("embed", "malformed_after=0")),
    Scenario("qdrant_down", 6, _one("vector_store_unavailable"), tenant=DOWN_TENANT),
    Scenario("bad_request", 10, frozenset(CLIENT_ERRORS)),
)


@dataclass(frozen=True)
class Turn:
    n: int
    transport: str
    scenario: Scenario
    variant: int  # picks the kind of bad request, and whether a websocket reconnects first

    @property
    def question(self) -> str:
        return f"How do I resume an answer over websocket? (turn {self.n}) {self.scenario.mark}".strip()


def plan(seed: int, turns: int) -> list[Turn]:
    rng = random.Random(seed)
    weights = [s.weight for s in SCENARIOS]
    return [
        Turn(n, rng.choice(TRANSPORTS), rng.choices(SCENARIOS, weights)[0], rng.randrange(1000))
        for n in range(turns)
    ]


class TurnFailed(AssertionError):
    """A turn broke a rule (two terminals, a done after an error, a 5xx for a client's mistake, ...)."""


def check(condition: bool, turn: Turn, what: str) -> None:
    if not condition:
        raise TurnFailed(f"turn {turn.n} ({turn.transport}/{turn.scenario.name}): {what}")


@dataclass
class Chaos:
    urls: dict[str, str]
    http: httpx.AsyncClient
    sockets: dict[tuple[int, str, str], Any] = field(default_factory=dict)  # (worker, app, tenant)
    tally: collections.Counter[str] = field(default_factory=collections.Counter)
    by_scenario: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    worker_of: dict[int, int] = field(
        default_factory=dict
    )  # turn -> the worker running it (owns its sockets)

    # -- one turn per transport -----------------------------------------------------------------------

    async def run(self, turn: Turn, worker: int = 0) -> str:
        self.worker_of[turn.n] = worker
        return await getattr(self, f"_{turn.transport}")(turn)

    def _socket_key(self, turn: Turn) -> tuple[int, str, str]:
        return (self.worker_of[turn.n], turn.scenario.app, turn.scenario.tenant)

    async def _socket(self, turn: Turn) -> Any:
        key = self._socket_key(turn)
        ws = self.sockets.get(key)
        if ws is not None and turn.variant % 7 == 0:  # now and then a fresh connection
            await ws.close()
            ws = None
        if ws is None:
            url = ws_url(self.urls[turn.scenario.app]) + f"?tenant={turn.scenario.tenant}"
            ws = self.sockets[key] = await websockets.connect(url, max_size=None)
        return ws

    async def _ws(self, turn: Turn) -> str:
        ws = await self._socket(turn)
        if turn.scenario.name == "bad_request":
            raw = [
                "{not json",
                json.dumps({"type": "bogus"}),
                json.dumps({"type": "ask", "message": "   "}),
                json.dumps({"type": "ask", "message": "x" * 5000}),
                json.dumps({"type": "ask", "message": "hi", "conversation_id": "nope"}),
                json.dumps({"type": "ask", "message": 7}),
            ][turn.variant % 6]
            await ws.send(raw)
            frame = json.loads(await ws.recv())
            check(frame["type"] == "error" and "message_id" not in frame, turn, f"not a frame error: {frame}")
            outcome = str(frame["code"])
        else:
            await ws.send(json.dumps({"type": "ask", "message": turn.question}))
            frames = []
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame["type"] in END_TYPES:
                    break
            check(frames[0]["type"] == "start", turn, f"first frame {frames[0]}")
            seqs = [f["seq"] for f in frames]
            check(seqs == list(range(1, len(frames) + 1)), turn, f"seqs {seqs}")
            outcome = (
                "done" if frames[-1]["type"] == "done" else str(frames[-1].get("code", frames[-1]["type"]))
            )
        await ws.send(
            json.dumps({"type": "ping"})
        )  # the next frame must be the pong: nothing after a terminal
        after = json.loads(await ws.recv())
        check(after == {"type": "pong"}, turn, f"a frame after the terminal: {after}")
        return outcome

    def _headers(self, turn: Turn) -> dict[str, str]:
        return {"X-Chatbot-Tenant": turn.scenario.tenant}

    def _bad_chat_body(self, turn: Turn) -> bytes:
        return [
            b"{not json",
            json.dumps({"msg": "hi"}).encode(),
            json.dumps({"message": ""}).encode(),
            json.dumps({"message": "x" * 5000}).encode(),
            json.dumps({"message": "hi", "conversation_id": "nope"}).encode(),
            json.dumps({"message": ["a"]}).encode(),
        ][turn.variant % 6]

    def _error_outcome(self, turn: Turn, response: httpx.Response, *, openai_shape: bool = False) -> str:
        body = response.json()
        code = str(body["error"]["code"])
        check(code != "internal_error", turn, f"internal_error: {body}")
        if code in CLIENT_ERRORS:
            check(400 <= response.status_code < 500, turn, f"{response.status_code} for a client's mistake")
        elif not openai_shape:
            check(
                response.status_code == status_for_code(code),
                turn,
                f"status {response.status_code} for {code}",
            )
        return code

    async def _sse(self, turn: Turn) -> str:
        url = self.urls[turn.scenario.app] + "/v1/chat"
        if turn.scenario.name == "bad_request":
            response = await self.http.post(
                url, content=self._bad_chat_body(turn), headers=self._headers(turn)
            )
            return self._error_outcome(turn, response)
        payload = {"message": turn.question, "stream": True}
        async with self.http.stream("POST", url, json=payload, headers=self._headers(turn)) as response:
            body = (await response.aread()).decode()
        if response.status_code != 200:
            return self._error_outcome(turn, response)
        events = parse_sse(body)
        ends = [e for e in events if e["event"] in END_TYPES]
        check(len(ends) == 1 and ends[0] is events[-1], turn, f"terminals {[e['event'] for e in ends]}")
        last = events[-1]["data"]
        return "done" if last["type"] == "done" else str(last.get("code", last["type"]))

    async def _rest(self, turn: Turn) -> str:
        url = self.urls[turn.scenario.app] + "/v1/chat"
        if turn.scenario.name == "bad_request":
            response = await self.http.post(
                url, content=self._bad_chat_body(turn), headers=self._headers(turn)
            )
            return self._error_outcome(turn, response)
        response = await self.http.post(url, json={"message": turn.question}, headers=self._headers(turn))
        if response.status_code != 200:
            return self._error_outcome(turn, response)
        body = response.json()
        check(body.get("finish_reason") == "stop" and body["answer"], turn, f"not a whole answer: {body}")
        return "done"

    def _openai_body(self, turn: Turn, *, stream: bool) -> dict[str, Any]:
        messages = [{"role": "user", "content": turn.question}]
        if turn.scenario.name != "bad_request":
            return {"model": "chatbot", "messages": messages, "stream": stream}
        return [
            {"model": "gpt-x", "messages": messages, "stream": stream},
            {"model": "chatbot", "messages": [], "stream": stream},
            {"model": "chatbot", "messages": [{"role": "assistant", "content": "hi"}], "stream": stream},
            {"model": "chatbot", "messages": [{"role": "user", "content": "  "}], "stream": stream},
            {"model": "chatbot", "messages": "hi", "stream": stream},
        ][turn.variant % 5]

    async def _openai(self, turn: Turn) -> str:
        url = self.urls[turn.scenario.app] + "/v1/chat/completions"
        response = await self.http.post(
            url, json=self._openai_body(turn, stream=False), headers=self._headers(turn)
        )
        if response.status_code != 200:
            return self._error_outcome(turn, response, openai_shape=True)
        body = response.json()
        check(body["choices"][0]["finish_reason"] == "stop", turn, f"finish {body['choices'][0]}")
        return "done"

    async def _openai_stream(self, turn: Turn) -> str:
        url = self.urls[turn.scenario.app] + "/v1/chat/completions"
        payload = self._openai_body(turn, stream=True)
        async with self.http.stream("POST", url, json=payload, headers=self._headers(turn)) as response:
            raw = await response.aread()
        if response.status_code != 200:
            return self._error_outcome(turn, response, openai_shape=True)
        datas = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        done_markers = [i for i, d in enumerate(datas) if d == "[DONE]"]
        objects = [json.loads(d) for d in datas if d != "[DONE]"]
        errors = [o for o in objects if "error" in o]
        finals = [o for o in objects if o.get("choices") and o["choices"][0].get("finish_reason")]
        if errors:
            check(len(errors) == 1 and not done_markers and not finals, turn, "an error and another terminal")
            check("error" in json.loads(datas[-1]), turn, "the error is not the last event")
            return str(errors[0]["error"]["code"])
        check(
            len(finals) == 1 and done_markers == [len(datas) - 1],
            turn,
            f"{len(finals)} finals, {done_markers}",
        )
        return "done"

    async def _ui(self, turn: Turn) -> str:
        url = self.urls[turn.scenario.app] + "/v1/ui/chat"
        if turn.scenario.name == "bad_request":
            payload: dict[str, Any] = [
                {"messages": []},
                {"messages": [{"role": "assistant", "parts": [{"type": "text", "text": "hi"}]}]},
                {"messages": [{"role": "user", "parts": [{"type": "text", "text": "x" * 5000}]}]},
                {"messages": "hi"},
            ][turn.variant % 4]
        else:
            payload = {"messages": [{"role": "user", "parts": [{"type": "text", "text": turn.question}]}]}
        async with self.http.stream("POST", url, json=payload, headers=self._headers(turn)) as response:
            raw = await response.aread()
        if response.status_code != 200:
            return self._error_outcome(turn, response)
        datas = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        check(datas[-1:] == ["[DONE]"] and datas.count("[DONE]") == 1, turn, "no single [DONE] at the end")
        parts = [json.loads(d) for d in datas[:-1]]
        ends = [p for p in parts if p["type"] in ("finish", "abort", "error")]
        check(len(ends) == 1 and ends[0] is parts[-1], turn, f"terminal parts {ends}")
        # the UI stream carries no error code: the text tells which (checked loosely), the type that it failed
        return "done" if ends[0]["type"] == "finish" else "ui_error"

    # -- the run -----------------------------------------------------------------------------------------

    async def worker(self, turns: collections.deque[Turn], worker: int) -> None:
        while turns:
            turn = turns.popleft()
            try:
                async with asyncio.timeout(TURN_TIMEOUT):
                    outcome = await self.run(turn, worker)
            except TimeoutError:
                self.failures.append(f"turn {turn.n} ({turn.transport}/{turn.scenario.name}): hung")
                outcome = "hang"
                await self._forget_socket(turn)
            except TurnFailed as exc:
                self.failures.append(str(exc))
                outcome = "broken"
                await self._forget_socket(turn)
            expected = turn.scenario.expect
            if turn.transport == "ui" and turn.scenario.name not in (
                "clean",
                "bad_request",
                "oversized_256k",
            ):
                expected = frozenset({"ui_error"})
            if outcome not in expected and outcome not in ("hang", "broken"):
                self.failures.append(
                    f"turn {turn.n} ({turn.transport}/{turn.scenario.name}): {outcome}, "
                    f"expected {sorted(expected)}"
                )
            self.tally[outcome] += 1
            self.by_scenario[turn.scenario.name] += 1

    async def _forget_socket(self, turn: Turn) -> None:
        ws = self.sockets.pop(self._socket_key(turn), None)
        if ws is not None:
            await ws.close()

    async def aclose(self) -> None:
        for ws in self.sockets.values():
            await ws.close()
        self.sockets.clear()


@contextlib.asynccontextmanager
async def chaos_stack(fake: MarkedFaultUpstream) -> AsyncIterator[tuple[dict[str, str], list[Services]]]:
    """Two apps on one store: 'main' (model and embeddings on the fake), 'dead' (model on a closed port)."""
    live = OpenAISettings(
        api_key="test-key",  # type: ignore[arg-type]  # pydantic coerces str to SecretStr
        base_url=fake.openai_base_url,
        max_retries=0,
        timeout=5,
        embedding_dimensions=DIMENSIONS,
    )
    dead = live.model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}/v1"})
    client, dead_client = build_openai_client(live), build_openai_client(dead)
    try:
        embedder: Embedder = OpenAIEmbedder(client, live)
        sparse = BM25SparseEmbedder()
        main = Providers(embedder=embedder, sparse=sparse, chat=OpenAIChatModel(client, live), reranker=None)
        down = Providers(
            embedder=embedder, sparse=sparse, chat=OpenAIChatModel(dead_client, dead), reranker=None
        )
        store = ScriptedOutageStore(QdrantSettings(path=":memory:", collection="chaos"))
        await open_store(store, main)
        settings = make_settings(
            deadlines={"first_token": FIRST_TOKEN_DEADLINE, "embed": 5, "retrieve": 5, "answer": 15},
            limits={"max_message_chars": 4000},
        )
        try:
            async with (
                serve_services(settings, main, store) as (main_url, main_svc),
                serve_services(settings, down, store) as (dead_url, dead_svc),
            ):
                yield {"main": main_url, "dead": dead_url}, [main_svc, dead_svc]
        finally:
            await store.aclose()
    finally:
        await client.close()
        await dead_client.close()


def app_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of the app and the test, not the fake upstream's (it keeps one per pooled SDK connection)."""
    return [
        t
        for t in asyncio.all_tasks()
        if "/tests/fakes/" not in getattr(t.get_coro(), "cr_code", _CODE).co_filename
    ]


_CODE = app_tasks.__code__


def _questions(records: list[Any]) -> list[str]:
    return [str(r.request_json["messages"][-1]["content"])[-80:] for r in records[:5]]


class TestChaos:
    async def test_every_turn_ends_in_its_outcome_and_nothing_leaks(self) -> None:
        """Seeded faults on every transport: one terminal per turn, its code, no hang or leak, still up."""
        turns = plan(SEED, TURNS)
        started = time.perf_counter()
        fake = MarkedFaultUpstream(
            reply=Reply(tokens=24), latency=Latency(token_ms=1), dimensions=DIMENSIONS, history=2000
        )
        async with fake:
            async with chaos_stack(fake) as (urls, services):
                tasks_before = len(app_tasks())
                async with httpx.AsyncClient(timeout=TURN_TIMEOUT) as http:
                    chaos = Chaos(urls, http)
                    queue = collections.deque(turns)
                    try:
                        await asyncio.gather(*(chaos.worker(queue, w) for w in range(WORKERS)))
                    finally:
                        await chaos.aclose()
                    elapsed = time.perf_counter() - started
                    # still serving: one clean turn on every transport
                    clean = next(s for s in SCENARIOS if s.name == "clean")
                    after = Chaos(urls, http)
                    try:
                        for i, transport in enumerate(TRANSPORTS):
                            assert await after.run(Turn(TURNS + i, transport, clean, 1)) == "done", transport
                    finally:
                        await after.aclose()
                for svc in services:
                    for _ in range(200):
                        if svc.answers.running == 0:
                            break
                        await asyncio.sleep(0.01)
                    assert svc.answers.running == 0, "an answer is still running after every client left"
                open_streams = [s for s in fake.streams if not s.ended]
                assert not open_streams, (
                    f"upstream streams left open: {_questions(open_streams)}; {chaos.failures}"
                )
                for _ in range(
                    400
                ):  # hypercorn ends an idle keep-alive connection's tasks within its 5 s timeout
                    if len(app_tasks()) <= tasks_before:
                        break
                    await asyncio.sleep(0.02)
                assert len(app_tasks()) <= tasks_before, f"tasks left behind by the turns: {app_tasks()}"
            for _ in range(100):  # the SDK clients are closed: their pooled sockets too
                if fake.open_connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert fake.open_connections == 0, "an upstream connection was left open"
            assert not fake.handler_errors, fake.handler_errors
        report = {
            "seed": SEED,
            "turns": TURNS,
            "workers": WORKERS,
            "seconds": round(elapsed, 1),
            "outcomes": dict(chaos.tally),
            "scenarios": dict(chaos.by_scenario),
            "failures": chaos.failures[:50],
        }
        (artifacts_dir() / "chaos.json").write_text(json.dumps(report, indent=2))
        print(f"\nchaos seed={SEED} turns={TURNS} in {elapsed:.1f}s: {tally_line(chaos.tally)}")  # noqa: T201
        assert not chaos.failures, "\n".join(chaos.failures[:20])
        assert sum(chaos.tally.values()) == TURNS
