"""The synchronous design, for comparison: Flask on gunicorn's threaded workers doing the same turn with the
sync SDKs (the sync clients are banned inside chatbot/, not here).

One turn: embed the question (openai.OpenAI) -> dense search of a local-mode Qdrant copy of the same 10k
collection (qdrant_client.QdrantClient, tenant-filtered, top 5) -> the product's prompts -> stream the chat
completion (the SDK's parsed chunks) -> SSE frames in the native format (start, sources, token, done), one
token frame per upstream chunk (a sync handler has no timer to coalesce on).

Each worker process opens its own copy of the collection (local mode locks its folder). Configuration comes
from the environment: OPENAI_BASE_URL, OPENAI_API_KEY, PEER_EMBEDDING_MODEL, PEER_CHAT_MODEL,
PEER_QDRANT_PATH (the folder copied per worker), PEER_COLLECTION, PEER_TENANT, PEER_TOP_K.

    gunicorn -k gthread -w 2 --threads 50 -b 127.0.0.1:8002 bench.sync_peer:app
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
from flask import Flask, Response, request
from qdrant_client import QdrantClient, models  # noqa: TID251 - the sync peer, on purpose

from chatbot.providers.base import Passage
from chatbot.rag.prompts import Prompts

app = Flask(__name__)
_lock = threading.Lock()
_clients: dict[str, Any] = {}


def clients() -> tuple[openai.OpenAI, QdrantClient, Prompts]:  # noqa: TID251 - the sync peer, on purpose
    """Built once per worker process (after gunicorn forks), on first use."""
    with _lock:
        if not _clients:
            base = os.environ["PEER_QDRANT_PATH"]
            mine = f"{base}-worker{os.getpid()}"
            shutil.rmtree(mine, ignore_errors=True)
            shutil.copytree(base, mine)
            _clients["openai"] = openai.OpenAI(max_retries=0, timeout=30)  # noqa: TID251 - sync on purpose
            _clients["qdrant"] = QdrantClient(path=mine)
            _clients["prompts"] = Prompts()
    return _clients["openai"], _clients["qdrant"], _clients["prompts"]


def frame(kind: str, message_id: str, seq: int, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, "message_id": message_id, "seq": seq, **fields}, separators=(",", ":"))
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode()


@app.get("/healthz")
def healthz() -> Any:
    clients()
    return {"status": "ok"}


@app.post("/v1/chat")
def chat() -> Response:
    body = request.get_json(force=True)
    question = str(body["message"]).strip()
    oai, qdrant, prompts = clients()
    message_id = "msg_" + uuid.uuid4().hex
    started = time.perf_counter()
    vector = (
        oai.embeddings.create(input=[question], model=os.environ["PEER_EMBEDDING_MODEL"]).data[0].embedding
    )
    hits = qdrant.query_points(
        os.environ.get("PEER_COLLECTION", "documents"),
        query=vector,
        using="dense",
        limit=int(os.environ.get("PEER_TOP_K", "5")),
        query_filter=models.Filter(
            must=[
                models.FieldCondition(key="tenant", match=models.MatchValue(value=os.environ["PEER_TENANT"]))
            ]
        ),
        with_payload=True,
    ).points
    sources = [
        {
            "n": n,
            "source": (p.payload or {}).get("source"),
            "text": (p.payload or {}).get("text", ""),
            "title": (p.payload or {}).get("title", ""),
            "score": p.score,
        }
        for n, p in enumerate(hits, start=1)
    ]
    passages = [Passage(n=s["n"], text=s["text"], title=s["title"]) for s in sources]
    messages = [{"role": m.role, "content": m.content} for m in prompts.chat_messages(question, passages, [])]

    def stream() -> Iterator[bytes]:
        seq = 1
        yield frame("start", message_id, seq, conversation_id="")
        seq += 1
        yield frame("sources", message_id, seq, sources=sources)
        usage: dict[str, int] = {}
        with oai.chat.completions.create(
            model=os.environ["PEER_CHAT_MODEL"],
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        ) as chunks:
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = {
                        "prompt_tokens": chunk.usage.prompt_tokens,
                        "completion_tokens": chunk.usage.completion_tokens,
                    }
                if chunk.choices and chunk.choices[0].delta.content:
                    seq += 1
                    yield frame("token", message_id, seq, delta=chunk.choices[0].delta.content)
        seq += 1
        yield frame(
            "done",
            message_id,
            seq,
            finish_reason="stop",
            usage=usage,
            timings={"total": round((time.perf_counter() - started) * 1000, 3)},
        )

    return Response(stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})
