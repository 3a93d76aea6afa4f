"""Dense similarity of a question to sentences, with a bounded LRU of sentence vectors.

Embedding sentences is the expensive part of the extractive answer (MiniLM int8: ~4.5 ms CPU per short
sentence in a batch of 30, ~3.5 ms for a question, measured on the 2-core dev box), so vectors are kept in
an LRU keyed by the text's hash (the same sentence in any chunk is one entry): a popular passage costs
nothing after the first answer that read it. Each answer embeds at most `budget` new sentences (those of
the best-ranked passages first), and none while the embedder is saturated (`saturated`: questions are
waiting for its inference threads): a sentence left out is scored lexically only. Under the offline
bench's 50 closed-loop conversations, embedding up to 16 new sentences per answer on the ingestion lane
cost 22 ms CPU per turn and a TTFT p99 of 2.1 s (the sentences waited behind every question); skipped under
saturation, the load keeps the cached vectors and the lexical score. Vectors are unit length,
so the similarity is a dot product (cosine for both MiniLM and the API embedders).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chatbot.providers.base import Embedder

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Dense:
    """The question's vector and the vectors of the sentences that have one (unit length)."""

    query: Vector
    sentences: Mapping[str, Vector]

    def similarity(self, text: str) -> float | None:
        """Cosine similarity of the question to the sentence, None when it has no vector."""
        vector = self.sentences.get(text)
        return None if vector is None else float(np.dot(self.query, vector))

    def similar(self, a: str, b: str, threshold: float) -> bool:
        """True when both sentences have vectors at least `threshold` similar."""
        va, vb = self.sentences.get(a), self.sentences.get(b)
        return va is not None and vb is not None and float(np.dot(va, vb)) >= threshold


def _unit(raw: Sequence[float]) -> Vector:
    vector = np.asarray(raw, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _key(kind: str, text: str) -> bytes:
    return hashlib.blake2b(
        f"{kind}\x1f{text}".encode("utf-8", errors="surrogatepass"), digest_size=16
    ).digest()


class SentenceVectors:
    """Question-to-sentence similarities from an Embedder, remembering up to `capacity` vectors."""

    def __init__(self, embedder: Embedder, *, capacity: int = 4096, budget: int = 8) -> None:
        self.embedder = embedder
        self.capacity = capacity
        self.budget = budget
        self._vectors: OrderedDict[bytes, Vector] = OrderedDict()
        self.embedded = 0  # sentences embedded so far (the cache's misses), for benches and tests

    def __len__(self) -> int:
        return len(self._vectors)

    async def lookup(
        self, question: str, texts: Sequence[str], query_vector: Sequence[float] | None = None
    ) -> Dense:
        """The question's vector (`query_vector` when given: the retriever's, from this embedder) and those
        of the texts that have (or get, within the budget) one.

        `texts` come best first: when more than `budget` are new, the first new ones are embedded."""
        if query_vector is not None and len(query_vector) == self.embedder.dimensions:
            query = _unit(query_vector)
        else:
            query = await self._vector("query", question)
        found: dict[str, Vector] = {}
        missing: list[str] = []
        budget = 0 if getattr(self.embedder, "saturated", False) else self.budget
        for text in dict.fromkeys(texts):
            vector = self._get(_key("document", text))
            if vector is not None:
                found[text] = vector
            elif len(missing) < budget:
                missing.append(text)
        if missing:
            vectors = await self.embedder.embed(missing, "document")
            self.embedded += len(missing)
            for text, raw in zip(missing, vectors, strict=True):
                found[text] = self._put(_key("document", text), raw)
        return Dense(query, found)

    async def _vector(self, kind: str, text: str) -> Vector:
        key = _key(kind, text)
        vector = self._get(key)
        if vector is None:
            [raw] = await self.embedder.embed([text], "query")
            vector = self._put(key, raw)
        return vector

    def _get(self, key: bytes) -> Vector | None:
        vector = self._vectors.get(key)
        if vector is not None:
            self._vectors.move_to_end(key)
        return vector

    def _put(self, key: bytes, raw: Sequence[float]) -> Vector:
        vector = _unit(raw)
        self._vectors[key] = vector
        self._vectors.move_to_end(key)
        while len(self._vectors) > self.capacity:
            self._vectors.popitem(last=False)
        return vector
