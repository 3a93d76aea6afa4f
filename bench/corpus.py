"""Synthetic but realistic markdown documents (headings, paragraphs, lists, code) and questions about them.

Deterministic from a seed. A document of `sections` sections of ~2 paragraphs chunks into roughly one chunk
per section (the product's chunker packs paragraphs up to 1000 characters).
"""

from __future__ import annotations

import random

_SUBJECTS = [
    "the websocket endpoint",
    "the upload API",
    "the vector store",
    "a tenant",
    "the rate limiter",
    "the answer task",
    "the event log",
    "hybrid search",
    "the offline embedder",
    "the reranker",
    "a conversation",
    "the widget",
    "the health check",
    "the metrics endpoint",
    "the ingestion worker",
    "the stop frame",
    "a resume request",
    "the embedding model",
    "the deployment",
    "the access token",
]
_VERBS = [
    "streams",
    "stores",
    "refuses",
    "rewrites",
    "cancels",
    "retries",
    "indexes",
    "caches",
    "splits",
    "validates",
    "records",
    "expires",
    "fuses",
    "ranks",
    "limits",
    "reports",
    "encrypts",
    "batches",
]
_OBJECTS = [
    "tokens as the model writes them",
    "each chunk with its tenant and source",
    "requests above the quota",
    "follow-up questions into standalone queries",
    "the upstream HTTP response",
    "the first failed request",
    "payload fields used by filters",
    "sequence numbers for every frame",
    "documents along their headings",
    "frames larger than sixty-four kilobytes",
    "every turn of the conversation",
    "idle answers after the grace window",
    "dense and sparse hits with reciprocal rank fusion",
    "passages by relevance to the question",
    "concurrent answers per process",
    "latency of each stage",
    "secrets at rest",
    "texts for the embedder",
]
_QUALIFIERS = [
    "",
    " by default",
    " when the client reconnects",
    " in local mode",
    " for each tenant",
    " unless the setting is disabled",
    " before the first token",
    " on shutdown",
    " within the deadline",
]
_TOPICS = [
    "Streaming",
    "Uploads",
    "Search",
    "Tenants",
    "Limits",
    "Answers",
    "Resume",
    "Ingestion",
    "Deployment",
    "Security",
    "Metrics",
    "Widget",
    "Conversations",
    "Errors",
    "Configuration",
    "Models",
]


def sentence(rng: random.Random) -> str:
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_QUALIFIERS)}."
    return s[0].upper() + s[1:]


def paragraph(rng: random.Random, sentences: tuple[int, int] = (3, 6)) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(*sentences)))


def document(rng: random.Random, index: int, sections: int) -> str:
    """One markdown document with `sections` second-level sections."""
    topic = rng.choice(_TOPICS)
    lines = [f"# {topic} guide {index}", "", paragraph(rng), ""]
    for s in range(sections):
        lines += [f"## {rng.choice(_TOPICS)} {index}.{s}", "", paragraph(rng), ""]
        kind = rng.random()
        if kind < 0.25:
            lines += [f"- {sentence(rng)}" for _ in range(3)] + [""]
        elif kind < 0.35:
            lines += ["```", f"CHATBOT_{rng.choice(_TOPICS).upper()}__LIMIT={rng.randint(1, 999)}", "```", ""]
        else:
            lines += [paragraph(rng, (2, 4)), ""]
    return "\n".join(lines)


def documents(n: int, sections: int = 12, seed: int = 11) -> list[tuple[str, bytes]]:
    """n (file name, markdown bytes) pairs."""
    rng = random.Random(seed)
    return [(f"guide-{i:05d}.md", document(rng, i, sections).encode()) for i in range(n)]


def questions(n: int, seed: int = 5) -> list[str]:
    """Standalone questions, each asked in a new conversation (so no follow-up rewrite is ever made)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        subject, verb, obj = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        out.append(f"When {subject} {verb} {obj}, what changes in the {rng.choice(_TOPICS).lower()} setup?")
    return out
