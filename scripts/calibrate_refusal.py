"""Fit the refusal threshold of the configured embedder (rag/confidence.py CALIBRATIONS) on data.

    PYTHONPATH=. python scripts/calibrate_refusal.py [--scifact DIR] [--max-false-refusal 0.05] [--json]

Answerable: the SciFact train claims (queries with a qrel in DIR/qrels/train.tsv) against the SciFact
corpus, and the guide's in-scope questions against docs/guide. Unanswerable: the questions of
scripts/calibration/questions.jsonl about things neither corpus contains (off-topic and near-topic). Each
question's score is the top dense cosine the pipeline's ConfidenceCheck computes. The threshold is fitted on
the answerable questions only (chatbot/eval/refusal.py fit_threshold); the refusal rates are measured.
Uses the embedder the settings choose (CHATBOT_EMBEDDING_PROVIDER...). SciFact is read, never copied.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from chatbot.eval.batching import BatchingEmbedder
from chatbot.eval.beir import read_beir
from chatbot.eval.harness import EVAL_TENANT, eval_settings, ingest_corpus
from chatbot.eval.refusal import Rates, fit_threshold, rates, top_similarities
from chatbot.ingest.service import Ingestor
from chatbot.providers.registry import build_providers
from chatbot.rag.confidence import ConfidenceCheck
from chatbot.settings import Settings
from chatbot.stores.factory import vector_store

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "scripts" / "calibration" / "questions.jsonl"


async def main(args: argparse.Namespace) -> None:
    settings = eval_settings(Settings())
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    data = read_beir(
        args.scifact / "corpus.jsonl", args.scifact / "queries.jsonl", args.scifact / "qrels/train.tsv"
    )
    claims = [text for qid, text in data.queries.items() if data.qrels.get(qid)]
    if args.other_docs is not None:  # the claims' relevant documents and a seeded sample of the others
        relevant = {doc for judged in data.qrels.values() for doc in judged}
        others = [d for d in data.corpus if d.doc_id not in relevant]
        sample = set(random.Random(0).sample(range(len(others)), min(args.other_docs, len(others))))  # noqa: S311
        corpus = [d for d in data.corpus if d.doc_id in relevant] + [
            d for i, d in enumerate(others) if i in sample
        ]
        data = dataclasses.replace(data, corpus=corpus)
    answerable: dict[str, list[float]] = {}
    unanswerable: dict[str, list[float]] = {}
    by_kind: dict[str, list[float]] = {}
    async with AsyncExitStack() as stack:
        providers = build_providers(settings, stack)
        embedder = providers.embedder
        for name in ("guide", "scifact"):
            store = vector_store(settings.qdrant.model_copy(update={"collection": f"calibrate-{name}"}))
            await store.open()
            stack.push_async_callback(store.aclose)
            await store.ensure_collection(embedder.name, embedder.dimensions, sparse=True)
            batching = BatchingEmbedder(embedder, max_batch=settings.local.batch_size)
            ingestor = Ingestor(embedder=batching, sparse=providers.sparse, store=store)
            if name == "guide":
                await ingestor.ingest_paths(
                    EVAL_TENANT, [ROOT / "docs" / "guide"], root=ROOT / "docs" / "guide"
                )
            else:
                await ingest_corpus(ingestor, data.corpus, concurrency=16, progress=not args.json)
            await batching.aclose()
            check = ConfidenceCheck(store=store, embedder=embedder, settings=settings.retrieval)
            mine = [r for r in rows if r["set"] == name]
            questions = claims if name == "scifact" else [r["question"] for r in mine if r["answerable"]]
            answerable[name] = await top_similarities(check, EVAL_TENANT, questions)
            unanswerable[name] = []
            for r in (r for r in mine if not r["answerable"]):
                score = (await top_similarities(check, EVAL_TENANT, [r["question"]]))[0]
                unanswerable[name].append(score)
                by_kind.setdefault(f"{name}/{r['kind']}", []).append(score)
    threshold = fit_threshold(answerable, max_false_refusal=args.max_false_refusal)
    result = {
        "embedder": embedder.name,
        "threshold": threshold,
        "max_false_refusal": args.max_false_refusal,
        "sets": {n: vars_of(rates(threshold, answerable[n], unanswerable[n])) for n in answerable},
        "unanswerable_by_kind": {k: rates(threshold, [], v).refusal_rate for k, v in by_kind.items()},
        "all": vars_of(rates(threshold, flat(answerable), flat(unanswerable))),
    }
    if args.scores is not None:  # every score, to study other rules
        args.scores.write_text(json.dumps({"answerable": answerable, "unanswerable": by_kind}))
    print(json.dumps(result, indent=2) if args.json else table(result))  # noqa: T201


def table(result: dict[str, Any]) -> str:
    threshold, a = result["threshold"], result["all"]
    lines = [
        f"embedder {result['embedder']}: threshold {threshold} "
        f"(false refusals <= {result['max_false_refusal']:.0%} of each answerable set)",
        f"{'set':<10} {'refused (unanswerable)':>24} {'false refusals (answerable)':>29}",
    ]
    for name, r in result["sets"].items():
        refused = f"{r['refusal_rate']:.1%} of {r['unanswerable']}"
        false = f"{r['false_refusal_rate']:.1%} of {r['answerable']}"
        lines.append(f"{name:<10} {refused:>24} {false:>29}")
    lines += [f"  {kind:<22} refused {rate:.1%}" for kind, rate in result["unanswerable_by_kind"].items()]
    lines.append(
        f'\n    "{result["embedder"]}": Calibration(threshold={threshold}, refusal_rate={a["refusal_rate"]:.3f}, '
        f'false_refusal_rate={a["false_refusal_rate"]:.3f}, data="..."),'
    )
    return "\n".join(lines)


def vars_of(r: Rates) -> dict[str, float]:
    return {k: getattr(r, k) for k in Rates.__slots__}


def flat(sets: dict[str, list[float]]) -> list[float]:
    return [score for scores in sets.values() for score in scores]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", type=Path, default=Path("/work/shared/data/scifact"))
    parser.add_argument("--max-false-refusal", type=float, default=0.05)
    parser.add_argument(
        "--other-docs",
        type=int,
        help="Ingest only the claims' relevant documents and this many others (seeded): faster, and a "
        "smaller corpus can only lower top cosines, so the fitted threshold errs towards answering.",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scores", type=Path, help="Also write every question's score to this JSON file.")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
