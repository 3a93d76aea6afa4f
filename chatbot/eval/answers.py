"""Answer-level evaluation: what the pipeline's answers cite, and whether it declines when it should.

    python -m chatbot eval --answers --corpus ... --queries ... --qrels ... [--unanswerable FILE] [--pairs FILE]

Every case is asked through the product's own Pipeline.stream_answer (rag/pipeline.py: retrieval, the
confidence check, the prompts and the configured chat model; offline, the extractive answerer), against
the collection the retrieval evaluation has just ingested, once per evaluated mode. Per mode:

- citation hit rate: over the answerable cases, the share whose answer cites ([n]) at least one source
  whose document is relevant (a qrel > 0, or the pair's expected source);
- false refusals: over the answerable cases, the share the answer declines;
- refusal rate: over the unanswerable cases, the share the answer declines;
- faithfulness: over every sentence of every non-declined answer that carries a citation, the share whose
  content words (lower-cased words of 3+ letters or digits, minus a short stop list) appear, at least 80%
  of them, in the text of the sources that sentence cites. It catches a model citing a source that does not
  contain the words it claims from it; it cannot see a paraphrase, a negation or a wrong number order. The
  extractive answerer quotes its sources, so offline it must be 1.0 (a check of the quoting).

An answer declines when its sources event says no relevant sources, or when it cites nothing.
Cases: the BEIR queries with qrels (answerable); `--unanswerable`, a queries file ({"_id", "text"} lines)
of questions the corpus does not answer; `--pairs`, lines {"question", "expected_source", "kind"} (answerable,
the source matched by its name or its corpus id; kind "unanswerable" or no expected_source: unanswerable).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.errors import ConfigError
from chatbot.eval.beir import BeirData, corpus_id, read_queries
from chatbot.events import SourcesEvent, TokenEvent
from chatbot.providers.registry import Providers
from chatbot.rag.pipeline import AnswerRequest, Pipeline
from chatbot.rag.prompts import Prompts
from chatbot.settings import Settings
from chatbot.stores.base import VectorStore
from chatbot.stores.memory import MemoryConversationStore

FAITHFUL_SHARE = 0.8
_CITATION = re.compile(r"\[(\d{1,3})\]")
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_STOP_WORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "but",
        "not",
        "you",
        "all",
        "any",
        "can",
        "had",
        "her",
        "was",
        "one",
        "our",
        "out",
        "has",
        "have",
        "how",
        "its",
        "may",
        "who",
        "why",
        "with",
        "this",
        "that",
        "from",
        "they",
        "will",
        "would",
        "there",
        "their",
        "what",
        "when",
        "which",
        "into",
        "than",
        "then",
        "them",
        "these",
        "those",
        "been",
        "also",
        "does",
        "did",
        "such",
        "only",
        "other",
        "more",
        "most",
        "some",
        "very",
    ]
)


@dataclass(frozen=True, slots=True)
class AnswerCase:
    question: str
    relevant: frozenset[str]  # corpus ids or source names; empty for an unanswerable case
    answerable: bool


@dataclass(frozen=True, slots=True)
class Answered:
    """One case's answer: the documents it cites, whether it declined, its faithfulness tallies."""

    cited: frozenset[str]
    declined: bool
    cited_sentences: int
    faithful_sentences: int


@dataclass(slots=True)
class AnswerResult:
    mode: str
    answerable: int = 0
    unanswerable: int = 0
    citation_hits: int = 0
    false_refusals: int = 0
    refusals: int = 0
    cited_sentences: int = 0
    faithful_sentences: int = 0
    misses: list[str] = field(default_factory=list)  # answerable questions whose answer cites no relevant doc

    def add(self, case: AnswerCase, answered: Answered) -> None:
        self.cited_sentences += answered.cited_sentences
        self.faithful_sentences += answered.faithful_sentences
        if not case.answerable:
            self.unanswerable += 1
            self.refusals += answered.declined
            return
        self.answerable += 1
        self.false_refusals += answered.declined
        if matches(answered.cited, case.relevant):
            self.citation_hits += 1
        else:
            self.misses.append(case.question)

    @property
    def citation_hit_rate(self) -> float:
        return _rate(self.citation_hits, self.answerable)

    @property
    def false_refusal_rate(self) -> float:
        return _rate(self.false_refusals, self.answerable)

    @property
    def refusal_rate(self) -> float:
        return _rate(self.refusals, self.unanswerable)

    @property
    def faithfulness(self) -> float | None:
        return self.faithful_sentences / self.cited_sentences if self.cited_sentences else None

    def to_dict(self) -> dict[str, Any]:
        faithfulness = self.faithfulness
        return {
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            "citation_hit_rate": round(self.citation_hit_rate, 4),
            "false_refusal_rate": round(self.false_refusal_rate, 4),
            "refusal_rate": round(self.refusal_rate, 4),
            "faithfulness": None if faithfulness is None else round(faithfulness, 4),
            "cited_sentences": self.cited_sentences,
        }


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0


def matches(cited: Iterable[str], relevant: frozenset[str]) -> bool:
    """A cited source is relevant when its name or its corpus id is among the relevant ones."""
    return any(name in relevant or corpus_id(name) in relevant for name in cited)


# -- the cases ------------------------------------------------------------------------------------


def beir_cases(data: BeirData, limit: int | None = None) -> list[AnswerCase]:
    """The judged queries, answerable, relevant = their documents with a qrel > 0 (the first `limit`)."""
    cases = [
        AnswerCase(data.queries[q], frozenset(d for d, g in data.qrels.get(q, {}).items() if g > 0), True)
        for q in data.queries
        if any(g > 0 for g in data.qrels.get(q, {}).values())
    ]
    return cases[:limit] if limit is not None else cases


def unanswerable_cases(path: Path) -> list[AnswerCase]:
    """A queries file ({"_id", "text"} lines) of questions the corpus does not answer."""
    return [AnswerCase(text, frozenset(), False) for text in read_queries(path).values()]


def pair_cases(path: Path) -> list[AnswerCase]:
    """{"question", "expected_source", "kind"} lines (kind "unanswerable" or no source: unanswerable)."""
    cases: list[AnswerCase] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question = str(row["question"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number}: expected a JSON object with a 'question'") from None
        source = row.get("expected_source")
        answerable = bool(source) and row.get("kind") != "unanswerable"
        cases.append(
            AnswerCase(question, frozenset({str(source)}) if answerable else frozenset(), answerable)
        )
    return cases


def answer_cases(args: Any) -> list[AnswerCase] | None:
    """The extra cases `eval --answers` asks (None without --answers): --unanswerable, then --pairs."""
    if not args.answers:
        if args.unanswerable or args.pairs:
            raise ConfigError("--unanswerable and --pairs need --answers.")
        return None
    cases = unanswerable_cases(args.unanswerable) if args.unanswerable else []
    return cases + (pair_cases(args.pairs) if args.pairs else [])


# -- judging one answer ---------------------------------------------------------------------------


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOP_WORDS}


def judge(answer: str, sources: Sequence[Any], *, no_relevant_sources: bool) -> Answered:
    """Which documents `answer` cites among `sources` (events.Source), whether it declined, and how many of
    its cited sentences are faithful (module docstring)."""
    by_number = {s.n: s for s in sources}
    cited: set[str] = set()
    cited_sentences = faithful = 0
    for sentence in _SENTENCE_END.split(answer):
        numbers = {int(n) for n in _CITATION.findall(sentence)} & by_number.keys()
        if not numbers:
            continue
        cited.update(by_number[n].source for n in numbers)
        words = content_words(_CITATION.sub(" ", sentence))
        if not words:
            continue
        cited_sentences += 1
        found = content_words(" ".join(by_number[n].text + " " + by_number[n].title for n in numbers))
        faithful += len(words & found) >= FAITHFUL_SHARE * len(words)
    declined = no_relevant_sources or not cited
    return Answered(frozenset(cited), declined, cited_sentences, faithful)


# -- the run ----------------------------------------------------------------------------------------


def answer_pipeline(
    settings: Settings, store: VectorStore, providers: Providers, *, rerank: bool
) -> Pipeline:
    """The product's pipeline over `store` with `settings` (its search mode) and the providers' models."""
    return Pipeline(
        settings=settings,
        embedder=providers.embedder,
        sparse=providers.sparse,
        chat=providers.chat,
        store=store,
        prompts=Prompts(settings.prompts_dir),
        conversations=MemoryConversationStore(max_conversations=1, max_turns=2),
        reranker=providers.reranker if rerank else None,
    )


async def answer_case(pipeline: Pipeline, tenant: str, case: AnswerCase, number: int) -> Answered:
    """Ask one case through the pipeline (no conversation: nothing is read or saved) and judge the answer."""
    parts: list[str] = []
    sources: Sequence[Any] = ()
    no_relevant = False
    request = AnswerRequest(tenant=tenant, question=case.question, message_id=f"eval-{number}", history=())
    async for event in pipeline.stream_answer(request):
        if isinstance(event, SourcesEvent):
            sources, no_relevant = event.sources, event.no_relevant_sources
        elif isinstance(event, TokenEvent):
            parts.append(event.delta)
        elif event.type == "error":
            raise ConfigError(f"answering {case.question!r} failed: {event.model_dump()}")
    return judge("".join(parts), sources, no_relevant_sources=no_relevant)


async def evaluate_answers(
    settings: Settings,
    store: VectorStore,
    providers: Providers,
    mode: str,
    cases: Sequence[AnswerCase],
    tenant: str,
) -> AnswerResult:
    """Every case through the pipeline in `mode` (dense, sparse, hybrid, or rerank = hybrid reranked)."""
    retrieval = settings.retrieval.model_copy(update={"mode": "hybrid" if mode == "rerank" else mode})
    pipeline = answer_pipeline(
        settings.model_copy(update={"retrieval": retrieval}), store, providers, rerank=mode == "rerank"
    )
    result = AnswerResult(mode)
    for number, case in enumerate(cases):
        result.add(case, await answer_case(pipeline, tenant, case, number))
    return result


def format_answers(results: Sequence[AnswerResult], chat: str) -> str:
    lines = [
        f"answers by {chat} (declined = no relevant sources or no citation)",
        f"{'mode':<8} {'cite hit':>9} {'false refusal':>14} {'refusal':>8} {'faithful':>9} "
        f"{'answerable':>11} {'unanswerable':>13}",
    ]
    for r in results:
        faithful = "-" if r.faithfulness is None else f"{r.faithfulness:.4f}"
        lines.append(
            f"{r.mode:<8} {r.citation_hit_rate:>9.4f} {r.false_refusal_rate:>14.4f} {r.refusal_rate:>8.4f} "
            f"{faithful:>9} {r.answerable:>11d} {r.unanswerable:>13d}"
        )
    return "\n".join(lines)
