"""Command line: serve, ask, ingest, sync, documents, worker, eval, feedback.
The only place that reads the environment implicitly."""

from __future__ import annotations

import os

# BLAS threads fight over 2 cores (a 10k x 384 matvec got 11x dearer); set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from chatbot import cli_ingest
from chatbot.cli_serve import bootstrap_documents, run, serve_command
from chatbot.errors import ChatbotError, ConfigError, StoreInUse
from chatbot.ops.observability import configure_logging, wants_json_logs
from chatbot.ops.redaction import known_secrets
from chatbot.settings import Settings, load_settings

log = logging.getLogger("chatbot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatbot", description="Async RAG chat backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="Serve HTTP and websocket (hypercorn).")
    serve_p.add_argument("--host", help="Override CHATBOT_SERVER__HOST.")
    serve_p.add_argument("--port", type=int, help="Override CHATBOT_SERVER__PORT.")
    serve_p.add_argument("--workers", type=int, help="Processes serving the port (CHATBOT_SERVER__WORKERS).")
    ask_p = sub.add_parser(
        "ask", help="Ask one question through the chat service; prints the answer and sources."
    )
    ask_p.add_argument("question")
    ask_p.add_argument("--tenant", help="Whose documents answer (default: CHATBOT_DEFAULT_TENANT).")
    ask_p.add_argument(
        "--conversation", help="Continue this conversation (kept across runs only with CHATBOT_REDIS__URL)."
    )
    ingest_p = sub.add_parser(
        "ingest", help="Ingest files, directories, or URLs (a page or a sitemap), here or through a server."
    )
    ingest_p.add_argument("paths", nargs="+", metavar="PATH_OR_URL")
    ingest_p.add_argument(
        "--tenant", help="Tenant that owns the documents (default: CHATBOT_DEFAULT_TENANT)."
    )
    sync_p = sub.add_parser(
        "sync", help="Mirror a folder: ingest new and changed files, remove deleted ones (incremental)."
    )
    sync_p.add_argument("folder", type=Path)
    sync_p.add_argument("--tenant", help="Tenant that owns the documents (default: CHATBOT_DEFAULT_TENANT).")
    sub.add_parser(
        "worker", help="Run ingestion jobs from Redis (CHATBOT_JOBS__BACKEND=redis) until stopped."
    )
    ingest_p.add_argument(
        "--metadata",
        help='A flat JSON object stored on every chunk, e.g. \'{"tags": ["hr"], "lang": "en", "year": 2024}\'.',
    )
    mcp_p = sub.add_parser(
        "mcp", help="Serve MCP over stdio for desktop clients (HTTP clients use /mcp on the server)."
    )
    mcp_p.add_argument("--tenant", help="Whose documents the tools search (default: CHATBOT_DEFAULT_TENANT).")
    keys_p = sub.add_parser("keys", help="Make an API key (prints the key once and its settings entry).")
    keys_p.add_argument("action", choices=["new"])
    keys_p.add_argument("--tenant", required=True)
    keys_p.add_argument("--roles", default="chat", help="Comma-separated: chat, ingest, admin.")
    keys_p.add_argument("--id", dest="key_id", help="A name for the key (default: random).")
    keys_p.add_argument("--json", action="store_true", help="Print only the settings entry (for scripts).")
    docs_p = sub.add_parser("documents", help="List or delete ingested documents.")
    docs_p.add_argument("action", choices=["list", "delete"])
    docs_p.add_argument("doc_id", nargs="?")
    docs_p.add_argument("--tenant")
    reindex_p = sub.add_parser(
        "reindex",
        help="Re-embed every chunk with another embedder (a job; the old collection serves until the switch).",
    )
    reindex_p.add_argument(
        "--embedder",
        help="local/all-MiniLM-L6-v2-int8, local/multilingual-e5-small-q4, openai/<model> or cohere/<model> "
        "(default: the configured embedder).",
    )
    for store_p in (ingest_p, sync_p, docs_p, reindex_p):  # commands that open the store, or use its server
        store_p.add_argument(
            "--server",
            help="Send the work to this server's API (default: CHATBOT_SERVER_URL, else the server that "
            "holds the embedded store; key: CHATBOT_API_KEY).",
        )
    eval_p = sub.add_parser("eval", help="Measure retrieval (nDCG@10, Recall@100, MRR@10) on BEIR data.")
    eval_p.add_argument("--corpus", type=Path, required=True, help="corpus.jsonl: {_id, title, text} a line.")
    eval_p.add_argument("--queries", type=Path, required=True, help="queries.jsonl: {_id, text} a line.")
    eval_p.add_argument("--qrels", type=Path, required=True, help="qrels TSV: query-id, corpus-id, score.")
    eval_p.add_argument("--modes", help="Comma-separated: dense,sparse,hybrid,rerank (default: all usable).")
    eval_p.add_argument("--limit-queries", type=int, help="Evaluate only the first N judged queries.")
    eval_p.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    eval_p.add_argument(
        "--answers",
        action="store_true",
        help="Also answer the queries through the pipeline (citations, refusals).",
    )
    eval_p.add_argument(
        "--unanswerable", type=Path, help="With --answers: {_id, text} lines the corpus does not answer."
    )
    eval_p.add_argument(
        "--pairs", type=Path, help="With --answers: {question, expected_source, kind} lines to answer too."
    )
    eval_p.add_argument(
        "--store", type=Path, help="Keep the ingested corpus in this folder; reuse it next time."
    )
    eval_p.add_argument("--collection", default="eval", help="Name of the kept collection (with --store).")
    feedback_p = sub.add_parser(
        "feedback", help="Export rated answers as JSONL (an evaluation regression set)."
    )
    feedback_p.add_argument("action", choices=["export"])
    feedback_p.add_argument("--tenant", help="Only this tenant's ratings (default: every tenant).")
    feedback_p.add_argument("--out", type=Path, help="Write to this file (default: standard output).")
    args = parser.parse_args(argv)

    if args.command == "keys":
        return make_key(args.tenant, args.roles, args.key_id, as_json=args.json)
    try:
        settings = load_settings()
        configure_logging(  # CHATBOT_LOG_LEVEL/_FORMAT; every configured secret is masked by value
            settings.log_level, json=wants_json_logs(settings), secrets=known_secrets(settings)
        )
        if args.command == "serve":
            return serve_command(settings, args.host, args.port, args.workers)
        elif args.command == "ask":
            run(
                ask(settings, args.question, args.tenant or settings.default_tenant, args.conversation),
                settings,
            )
        elif args.command == "ingest":
            if (
                "CHATBOT_LOCAL__THREADS" not in os.environ
            ):  # a batch job may use both cores; serving keeps one
                settings.local = settings.local.model_copy(update={"threads": min(2, os.cpu_count() or 1)})
            metadata = parse_metadata(args.metadata) if args.metadata else None
            run(cli_ingest.ingest(settings, args.paths, args.tenant, server(args), metadata), settings)
        elif args.command == "sync":
            run(cli_ingest.sync(settings, args.folder, args.tenant, server(args)), settings)
        elif args.command == "reindex":
            from chatbot.cli_remote import reindex_command

            run(reindex_command(settings, args.embedder, server(args)), settings)
        elif args.command == "mcp":
            run(mcp_stdio(settings, args.tenant or settings.default_tenant), settings)
        elif args.command == "documents":
            run(cli_ingest.documents(settings, args.action, args.doc_id, args.tenant, server(args)), settings)
        elif args.command == "worker":
            from chatbot.ingest.jobs_redis import run_worker

            if settings.jobs.backend != "redis":
                raise ConfigError("worker needs CHATBOT_JOBS__BACKEND=redis and CHATBOT_REDIS__URL")
            run(worker(settings, run_worker), settings)
        elif args.command == "eval":
            from chatbot.eval.answers import answer_cases
            from chatbot.eval.harness import eval_command

            if "CHATBOT_LOCAL__THREADS" not in os.environ:  # a batch job, like ingest: both cores
                settings.local = settings.local.model_copy(update={"threads": min(2, os.cpu_count() or 1)})

            run(
                eval_command(
                    settings,
                    corpus=args.corpus,
                    queries=args.queries,
                    qrels=args.qrels,
                    modes=args.modes,
                    limit_queries=args.limit_queries,
                    as_json=args.json,
                    answers=answer_cases(args),
                    store=args.store,
                    collection=args.collection,
                ),
                settings,
            )
        elif args.command == "feedback":
            run(export_feedback(settings, args.tenant, args.out), settings)
    except StoreInUse as exc:
        hint = (  # ingest, sync and documents have said how to use the server already
            ""
            if "server" in exc.message
            else " Stop the other process first, or share a Qdrant server (CHATBOT_QDRANT__URL)."
        )
        print(f"error: {exc.message}{hint}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ChatbotError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


def server(args: argparse.Namespace) -> cli_ingest.Server:
    """Which server a store command may use: --server or CHATBOT_SERVER_URL (else the one holding the store),
    with CHATBOT_API_KEY."""
    return cli_ingest.Server(
        args.server or os.environ.get("CHATBOT_SERVER_URL"), os.environ.get("CHATBOT_API_KEY")
    )


def make_key(tenant: str, roles: str, key_id: str | None, *, as_json: bool) -> int:
    import json
    import secrets

    from chatbot.api.auth import new_api_key
    from chatbot.settings import ApiKeySpec

    key, sha256 = new_api_key()
    spec = ApiKeySpec(
        id=key_id or "key-" + secrets.token_hex(4),
        sha256=sha256,
        tenant=tenant,
        roles=[r.strip() for r in roles.split(",") if r.strip()],  # validated by pydantic
    )
    entry = json.dumps(spec.model_dump())
    if as_json:
        print(entry)
        print(f"# the key (shown once): {key}", file=sys.stderr)
    else:
        print(f"API key (shown once, store it now): {key}")
        print(f"Add to CHATBOT_AUTH__API_KEYS (a JSON list): {entry}")
    return 0


async def ask(settings: Settings, question: str, tenant: str, conversation_id: str | None) -> None:
    """One answer through the chat service, with the server's quotas and conversation handling: tokens
    as they stream, then the numbered sources; the conversation id goes to stderr (for --conversation)."""
    from contextlib import aclosing

    from chatbot.chat.caller import Caller
    from chatbot.chat.service import Ask, error_of
    from chatbot.events import ErrorEvent, Source, SourcesEvent, StoppedEvent, TokenEvent
    from chatbot.wiring import build_services

    async with build_services(settings) as services:
        if settings.server.ingest_on_start:
            await bootstrap_documents(services, settings)
        chat, caller = services.chat_service, Caller(tenant=tenant, subject="cli")
        started = await chat.start(caller, Ask(question, conversation_id))
        sources: tuple[Source, ...] = ()
        async with aclosing(await chat.follow(caller, started.message_id, stop_on_leave=True)) as events:
            async for _seq, event in events:  # Ctrl-C leaves the loop: the answer is stopped
                if isinstance(event, TokenEvent):
                    print(event.delta, end="", flush=True)
                elif isinstance(event, SourcesEvent):
                    sources = event.sources
                elif isinstance(event, StoppedEvent):
                    print(f" [stopped: {event.reason}]", end="")
                elif isinstance(event, ErrorEvent):
                    print()
                    raise error_of(event)
        print()
        for source in sources:
            print(f"[{source.n}] {' > '.join(source.heading_path) or source.title} ({source.source})")
        print(f"conversation: {started.conversation_id}", file=sys.stderr)


def parse_metadata(raw: str) -> dict[str, Any]:
    """--metadata: a JSON object validated as stores.base.Metadata (ConfigError naming the problem)."""
    from pydantic import ValidationError

    from chatbot.stores.base import Metadata

    try:
        return Metadata.model_validate_json(raw).root
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"--metadata: {first['msg']}" + (f" (at {where})" if where else "")) from None


async def export_feedback(settings: Settings, tenant: str | None, out: Path | None) -> None:
    """Every rating (of `tenant`, or all) as JSONL: question, answer, sources, rating, comment, reasons."""
    from contextlib import AsyncExitStack

    from chatbot.chat.feedback import export_rows, write_jsonl
    from chatbot.stores.factory import open_feedback_store

    if not settings.redis.url:
        print(
            "warning: without CHATBOT_REDIS__URL ratings live in the server's memory: nothing to export",
            file=sys.stderr,
        )
    async with AsyncExitStack() as stack:
        store = await open_feedback_store(settings, stack)
        if out is None:
            count = await write_jsonl(export_rows(store, tenant), sys.stdout)
        else:
            with out.open("w", encoding="utf-8") as f:
                count = await write_jsonl(export_rows(store, tenant), f)
    print(f"exported {count} ratings", file=sys.stderr)


async def mcp_stdio(settings: Settings, tenant: str) -> None:
    """The MCP server on stdin/stdout, as the local user who started it (like `ask` and `ingest`): the
    tools run as `tenant`, through the same chat service and quotas as the HTTP transport. Logs go to
    stderr; stdout carries only the protocol."""
    from chatbot.api.mcp_tools import Backend, build_server
    from chatbot.chat.caller import Caller
    from chatbot.wiring import build_services

    if not re.fullmatch(r"[A-Za-z0-9_\-.]{1,64}", tenant):
        raise ConfigError("A tenant is 1-64 letters, digits, '.', '_' or '-'.")
    async with build_services(settings) as services:
        server = build_server(Backend(services, Caller(tenant=tenant, subject=f"mcp-stdio:{tenant}")))
        await server.run_stdio_async()


async def worker(settings: Settings, run_worker: Any) -> None:
    """Build the services once, then take ingestion jobs from Redis until stopped."""
    from chatbot.wiring import build_services

    async with build_services(settings) as services:
        await run_worker(settings, services)


if __name__ == "__main__":
    sys.exit(main())
