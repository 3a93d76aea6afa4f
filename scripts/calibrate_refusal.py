"""Fit the refusal threshold of the configured embedder (rag/confidence.py CALIBRATIONS) on data.

    PYTHONPATH=. python scripts/calibrate_refusal.py [--scifact DIR] [--scifact-store DIR | --other-docs N]
        [--max-false-refusal 0.05] [--ceiling 0.35] [--gap-rank 20] [--json] [--scores FILE]

Answerable, one set each:
- scifact: the SciFact train claims (queries with a qrel in DIR/qrels/train.tsv) against the SciFact corpus,
  ingested here or read from a collection `python -m chatbot eval --store S` kept (--scifact-store S/scifact);
- guide: the in-scope questions of scripts/calibration/questions.jsonl and the guide pairs of
  tests/fixtures/answer_pairs.jsonl (paraphrased), against docs/guide plus the generated document corpus that
  test_answer_pairs ingests (its makers are reused), as that test asks them;
- corpus: the corpus pairs of answer_pairs.jsonl, against the same store.
Unanswerable: the questions of questions.jsonl about things neither corpus contains (off-topic and
near-topic for SciFact, out-of-scope for the guide). Each question's score is the top dense cosine the
pipeline's ConfidenceCheck computes. The threshold is fitted on the answerable questions only
(chatbot/eval/refusal.py fit_threshold); the refusal rates are measured. The two-signal rules (eval/refusal.py
band_refused: under --ceiling, the gap over the --gap-rank-th cosine, or the query's term coverage of the
top chunk) get their minimum fitted the same way and are printed next to the cosine alone.
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
from chatbot.eval.beir import BeirData, read_beir
from chatbot.eval.harness import EVAL_TENANT, eval_settings, ingest_corpus
from chatbot.eval.refusal import Probe, band_refused, fit_minimum, fit_threshold, probe_questions
from chatbot.ingest.service import Ingestor
from chatbot.providers.registry import Providers, build_providers
from chatbot.rag.confidence import ConfidenceCheck
from chatbot.settings import Settings
from chatbot.stores.base import VectorStore
from chatbot.stores.factory import vector_store
from tests.service.test_answer_pairs import CORPUS, PAIRS, load_pairs

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "scripts" / "calibration" / "questions.jsonl"
GUIDE = ROOT / "docs" / "guide"


async def main(args: argparse.Namespace) -> None:
    settings = eval_settings(Settings())
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = load_pairs(PAIRS)
    data = read_beir(
        args.scifact / "corpus.jsonl", args.scifact / "queries.jsonl", args.scifact / "qrels/train.tsv"
    )
    claims = [text for qid, text in data.queries.items() if data.qrels.get(qid)]
    questions = {  # answerable set -> its questions; the store each is asked against
        "guide": [r["question"] for r in rows if r["set"] == "guide" and r["answerable"]]
        + [p["question"] for p in pairs if p["kind"] == "guide"],
        "corpus": [p["question"] for p in pairs if p["kind"] == "corpus"],
        "scifact": claims,
    }
    unanswerable_questions: dict[str, list[str]] = {}
    for r in rows:
        if not r["answerable"]:
            unanswerable_questions.setdefault(f"{r['set']}/{r['kind']}", []).append(r["question"])
    answerable: dict[str, list[Probe]] = {}
    unanswerable: dict[str, list[Probe]] = {}
    async with AsyncExitStack() as stack:
        providers = build_providers(settings, stack)
        if providers.sparse is None:  # eval_settings turns the sparse model on
            raise SystemExit("the calibration needs the sparse model")
        for store_name in ("guide", "scifact"):
            store = await open_store(settings, store_name, args, stack)
            await store.ensure_collection(providers.embedder.name, providers.embedder.dimensions, sparse=True)
            if store_name == "guide":
                await ingest_guide(store, providers)
            elif args.scifact_store is None:
                await ingest_scifact(store, providers, subset(data, args.other_docs), settings, not args.json)
            check = ConfidenceCheck(store=store, embedder=providers.embedder, settings=settings.retrieval)
            for name in ("guide", "corpus") if store_name == "guide" else ("scifact",):
                answerable[name] = await probe_questions(
                    check, providers.sparse, EVAL_TENANT, questions[name], gap_rank=args.gap_rank
                )
            for kind, asked in unanswerable_questions.items():
                if kind.startswith(f"{store_name}/"):
                    unanswerable[kind] = await probe_questions(
                        check, providers.sparse, EVAL_TENANT, asked, gap_rank=args.gap_rank
                    )
    result = evaluate(answerable, unanswerable, args)
    result["embedder"] = providers.embedder.name
    if args.scores is not None:  # every probe, to study other rules
        dump = {
            part: {k: [dataclasses.astuple(p) for p in v] for k, v in sets.items()}
            for part, sets in (("answerable", answerable), ("unanswerable", unanswerable))
        }
        args.scores.write_text(json.dumps(dump))
    print(json.dumps(result, indent=2) if args.json else table(result))  # noqa: T201


async def open_store(
    settings: Settings, name: str, args: argparse.Namespace, stack: AsyncExitStack
) -> VectorStore:
    """A scratch in-memory collection, or the kept SciFact collection (--scifact-store) read in place."""
    qdrant = settings.qdrant.model_copy(update={"collection": f"calibrate-{name}"})
    if name == "scifact" and args.scifact_store is not None:
        qdrant = qdrant.model_copy(
            update={"path": str(args.scifact_store / "index"), "collection": args.scifact_store.name}
        )
    store = vector_store(qdrant)
    await store.open()
    stack.push_async_callback(store.aclose)
    return store


async def ingest_guide(store: VectorStore, providers: Providers) -> None:
    """docs/guide and the generated documents of test_answer_pairs, in one tenant as that test has them."""
    ingestor = Ingestor(embedder=providers.embedder, sparse=providers.sparse, store=store)
    await ingestor.ingest_paths(EVAL_TENANT, [GUIDE], root=GUIDE)
    for source, make in CORPUS.items():
        await ingestor.ingest_bytes(EVAL_TENANT, source, make())


async def ingest_scifact(
    store: VectorStore, providers: Providers, data: BeirData, settings: Settings, progress: bool
) -> None:
    batching = BatchingEmbedder(providers.embedder, max_batch=settings.local.batch_size)
    ingestor = Ingestor(embedder=batching, sparse=providers.sparse, store=store)
    await ingest_corpus(ingestor, data.corpus, concurrency=16, progress=progress)
    await batching.aclose()


def subset(data: BeirData, other_docs: int | None) -> BeirData:
    """The claims' relevant documents and a seeded sample of `other_docs` others (all when None)."""
    if other_docs is None:
        return data
    relevant = {doc for judged in data.qrels.values() for doc in judged}
    others = [d for d in data.corpus if d.doc_id not in relevant]
    sample = set(random.Random(0).sample(range(len(others)), min(other_docs, len(others))))  # noqa: S311
    corpus = [d for d in data.corpus if d.doc_id in relevant] + [
        d for i, d in enumerate(others) if i in sample
    ]
    return dataclasses.replace(data, corpus=corpus)


SECOND = {"gap": lambda p: p.gap, "coverage": lambda p: p.coverage}  # the second signals tried


def evaluate(
    answerable: dict[str, list[Probe]], unanswerable: dict[str, list[Probe]], args: argparse.Namespace
) -> dict[str, Any]:
    """The fitted threshold, the minimum of each second signal under the ceiling, and what each rule does
    on every set."""
    cosines = {name: [p.cosine for p in probes] for name, probes in answerable.items()}
    threshold = fit_threshold(cosines, max_false_refusal=args.max_false_refusal)
    rules: dict[str, Any] = {
        "cosine": {
            "minimum": None,
            "rates": {k: share(v, lambda p: p.cosine < threshold) for k, v in both(answerable, unanswerable)},
        }
    }
    for name, signal in SECOND.items():
        minimum = fit_minimum(
            {k: [(p.cosine, signal(p)) for p in v] for k, v in answerable.items()},
            floor=threshold,
            ceiling=args.ceiling,
            max_false_refusal=args.max_false_refusal,
        )

        def rule(p: Probe, signal: Any = signal, minimum: float = minimum) -> bool:
            return band_refused(p.cosine, signal(p), threshold, args.ceiling, minimum)

        rules[name] = {
            "minimum": minimum,
            "rates": {k: share(v, rule) for k, v in both(answerable, unanswerable)},
        }
    everything = [p for v in unanswerable.values() for p in v]
    answered = [p for v in answerable.values() for p in v]
    gap = rules["gap"]["minimum"]
    kept = lambda p: band_refused(p.cosine, p.gap, threshold, args.ceiling, gap)  # noqa: E731
    return {
        "threshold": threshold,
        "ceiling": args.ceiling,
        "gap_rank": args.gap_rank,
        "max_false_refusal": args.max_false_refusal,
        "answerable": list(answerable),
        "rules": rules,
        "all": {"refusal_rate": share(everything, kept), "false_refusal_rate": share(answered, kept)},
        "sizes": {n: len(v) for n, v in both(answerable, unanswerable)},
    }


def both(
    answerable: dict[str, list[Probe]], unanswerable: dict[str, list[Probe]]
) -> list[tuple[str, list[Probe]]]:
    return [*answerable.items(), *unanswerable.items()]


def share(probes: list[Probe], refused: Any) -> float:
    return sum(bool(refused(p)) for p in probes) / len(probes) if probes else 0.0


def table(result: dict[str, Any]) -> str:
    rules = result["rules"]
    lines = [
        f"embedder {result['embedder']}: threshold {result['threshold']}; under ceiling {result['ceiling']}: "
        f"min gap over the {result['gap_rank']}th best {rules['gap']['minimum']}, "
        f"min term coverage {rules['coverage']['minimum']} (false refusals <= {result['max_false_refusal']:.0%} "
        "of each answerable set)",
        f"{'set':<22} {'n':>4} {'cosine alone':>13} {'+ gap':>8} {'+ coverage':>11}",
    ]
    for name, n in result["sizes"].items():
        label = "false refusals" if name in result["answerable"] else "refused"
        cells = " ".join(
            f"{rules[r]['rates'][name]:>{w}.1%}" for r, w in (("cosine", 13), ("gap", 8), ("coverage", 11))
        )
        lines.append(f"  {name:<20} {n:>4} {cells}   ({label})")
    a = result["all"]
    lines.append(
        f'\n    "{result["embedder"]}": Calibration(threshold={result["threshold"]}, '
        f'refusal_rate={a["refusal_rate"]:.3f}, false_refusal_rate={a["false_refusal_rate"]:.3f}, data="...", '
        f"ceiling={result['ceiling']}, min_gap={rules['gap']['minimum']}, gap_rank={result['gap_rank']}),"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", type=Path, default=Path("/work/shared/data/scifact"))
    parser.add_argument(
        "--scifact-store",
        type=Path,
        help="A SciFact collection folder `python -m chatbot eval --store S` kept (S/scifact): read, not ingested.",
    )
    parser.add_argument("--max-false-refusal", type=float, default=0.05)
    parser.add_argument(
        "--ceiling", type=float, default=0.35, help="The two-signal rules apply below this top cosine."
    )
    parser.add_argument("--gap-rank", type=int, default=20, help="The gap is over this rank's cosine.")
    parser.add_argument(
        "--other-docs",
        type=int,
        help="Ingest only the claims' relevant documents and this many others (seeded): faster, and a "
        "smaller corpus can only lower top cosines, so the fitted threshold errs towards answering.",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scores", type=Path, help="Also write every question's probe to this JSON file.")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
