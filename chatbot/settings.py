"""One settings tree. Environment: CHATBOT_ prefix, nested with __ (CHATBOT_QDRANT__URL=...).

OPENAI_API_KEY / OPENAI_BASE_URL and COHERE_API_KEY / CO_API_KEY are honoured as the SDKs honour them.
The sections of the model providers (and the source for those SDK variables) live in settings_providers.py
and are re-exported here: import every settings name from chatbot.settings.
Nothing is read at import; Settings() reads the environment when __main__ builds it.
"""

from __future__ import annotations

import ipaddress
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
    CacheSettings as CacheSettings,
    CohereSettings as CohereSettings,
    FailoverSettings as FailoverSettings,
    LocalModelSettings as LocalModelSettings,
    OpenAISettings as OpenAISettings,
    SdkEnvSource,
)
from chatbot.settings_ingest import FetchSettings as FetchSettings, JobSettings as JobSettings
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
        description="Local mode: answer searches from an exact in-memory numpy mirror (~1 ms, not ~76 ms at 10k).",
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
    fusion: Literal["rrf", "dbsf"] = Field("rrf", description="How hybrid mode fuses dense and sparse hits.")
    prefetch_limit: int = Field(40, ge=1, le=1000, description="Candidates each prefetch brings to fusion.")
    rerank: bool = Field(True, description="Rerank with Cohere when a Cohere key is configured.")
    rerank_candidates: int = Field(25, ge=1, le=200, description="Candidates sent to the reranker.")
    rewrite_followups: bool = Field(True, description="Rewrite follow-up questions into standalone queries.")


class LimitSettings(BaseModel):
    max_message_chars: int = Field(4000, ge=1, description="Longest user message accepted.")
    max_history_messages: int = Field(
        20, ge=0, description="Earlier messages kept per conversation and sent."
    )
    max_conversations: int = Field(10_000, ge=1, description="Conversations kept in memory (oldest dropped).")
    max_frame_bytes: int = Field(
        65_536, ge=1024, description="Largest websocket frame or JSON body accepted."
    )
    max_chat_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest body of POST /v1/chat/completions and /v1/ui/chat (these clients send their history).",
    )
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest uploaded document.")
    max_files_per_upload: int = Field(20, ge=1, description="Documents per upload request.")
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A request body not received whole within this many seconds: 408 (a slow body holds at "
        "most its route's limit, for at most this long).",
    )
    max_answers_per_process: int = Field(
        256, ge=1, description="Concurrent answers per process; beyond: busy."
    )
    max_connections: int = Field(1000, ge=1, description="Open websocket connections per process.")
    max_connections_per_client: int = Field(
        100,
        ge=1,
        description="Open websocket connections per client IP address; beyond: 429 before accept. Behind a "
        "reverse proxy every client has the proxy's address: raise it to max_connections there.",
    )


class ParsingSettings(BaseModel):
    """How uploads are parsed: worker processes, their budgets, and per-document bounds."""

    workers: int = Field(2, ge=1, description="Parse worker processes at once (per server process).")
    per_tenant: int = Field(1, ge=1, description="Parse workers one tenant may hold at once.")
    cpu_seconds: int = Field(60, ge=1, description="CPU time one document may cost; beyond: parse_timeout.")
    memory_mb: int = Field(
        2048, ge=256, description="Address space of a parse worker; beyond: document_too_large."
    )
    wall_seconds: float = Field(
        120.0, gt=0, description="Wall-clock limit of one parse; beyond: parse_timeout."
    )
    max_pdf_pages: int = Field(2000, ge=1, description="Pages a PDF may have.")
    max_chars: int = Field(5_000_000, ge=1000, description="Characters of text a PDF may yield.")
    max_unpacked_mb: int = Field(200, ge=1, description="What a docx/pptx/xlsx/epub may unpack to.")
    ocr: bool = Field(True, description="Read PDF pages without a text layer with tesseract (if installed).")
    json_text_field: str = Field(
        "text", min_length=1, description="Field of a JSON/JSONL record holding its text."
    )


class StreamSettings(BaseModel):
    coalesce_ms: float = Field(30.0, ge=0, description="Tokens are batched into frames at most this long.")
    coalesce_chars: int = Field(
        256, ge=1, description="A frame is flushed once it holds this many characters."
    )
    grace_seconds: float = Field(30.0, ge=0, description="How long an answer runs on after its reader left.")
    cancel_on_disconnect: bool = Field(
        False, description="Cancel an answer as soon as its reader disconnects."
    )
    log_max_events: int = Field(4096, ge=16, description="Events kept per answer for resume.")
    send_timeout: float = Field(
        10.0, gt=0, description="A client that does not read for this long is detached."
    )
    heartbeat_seconds: float = Field(
        15.0, gt=0, description="SSE comment / websocket ping after this much quiet."
    )
    on_busy_connection: Literal["refuse", "replace"] = Field(
        "refuse", description="A new ask while one runs on the connection: refuse it, or stop the old one."
    )


class DeadlineSettings(BaseModel):
    embed: float = Field(10.0, gt=0, description="Seconds to embed the question.")
    retrieve: float = Field(10.0, gt=0, description="Seconds to search the vector store.")
    first_token: float = Field(30.0, gt=0, description="Seconds from start of generation to the first token.")
    answer: float = Field(180.0, gt=0, description="Seconds for the whole answer.")


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed for CORS and websocket (besides the server's own). '*' allows any.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values served (name, or name:port; '*' any); others get 400 host_not_allowed. "
        "Empty: in dev 127.0.0.1, localhost, [::1] and `host` (any port); in prod any host.",
    )
    shutdown_seconds: float = Field(
        10.0,
        ge=0,
        description="On SIGTERM the whole exit takes at most this long: running answers finish for most of it "
        "(the rest end with an error event), then connections and stores close.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For is believed: the "
        "client address is then the last one not in this list. Empty: the socket's address.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP address or network") from None
        return value

    uvloop: bool = Field(True, description="Run hypercorn on uvloop when it is installed.")
    ingest_on_start: bool = Field(
        True, description="`serve` ingests docs/guide when the collection is empty."
    )
    looplag_threshold_ms: float = Field(
        100.0, gt=0, description="Warn (naming what ran) when the event loop wakes this many ms too late."
    )


PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "placeholder", "dev", "test", "xxx"}
)
MIN_SECRET_CHARS = 32


Role = Literal["chat", "ingest", "admin"]


class ApiKeySpec(BaseModel):
    """One API key, stored as the sha256 of the key (make one with `python -m chatbot keys new`)."""

    id: str = Field(min_length=1, max_length=64, description="A name for the key, shown in logs and metrics.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the key; the key itself is never stored."
    )
    tenant: str = Field(
        pattern=r"^[A-Za-z0-9_\-.]{1,64}$", description="The tenant whose documents the key sees."
    )
    roles: list[Role] = Field(
        default_factory=lambda: list[Role](["chat"]), description="chat, ingest and/or admin."
    )


class QuotaSettings(BaseModel):
    requests_per_minute: int = Field(
        0,
        ge=0,
        description="Requests (HTTP requests and websocket asks) per minute per API key, per widget visitor (the "
        "id bound into its token) or per tenant in open access; 0 = no limit.",
    )
    tokens_per_day: int = Field(
        0, ge=0, description="Model tokens (prompt + completion) per tenant per day; 0 = no limit."
    )
    concurrent_answers: int = Field(0, ge=0, description="Answers running at once per tenant; 0 = no limit.")
    websocket_connections: int = Field(
        0, ge=0, description="Open websocket connections per tenant; 0 = no limit."
    )
    address_requests_per_minute: int = Field(
        0,
        ge=0,
        description="Widget requests per minute per client address (all its visitors: a page reloaded for new "
        "tokens); 0 = no limit. Behind a reverse proxy set server.trusted_proxies.",
    )
    visitor_concurrent_answers: int = Field(
        0, ge=0, description="Answers running at once per widget visitor; 0 = no limit."
    )
    visitor_websocket_connections: int = Field(
        0, ge=0, description="Open websocket connections per widget visitor; 0 = no limit."
    )
    visitor_token_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of tokens_per_day one widget visitor may use (e.g. 0.05); 0 = no per-visitor cap.",
    )
    api_key_reserve: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share of each tenant limit (tokens_per_day, concurrent_answers, websocket_connections) "
        "that widget traffic can never take: kept for the tenant's API keys.",
    )


class AuthSettings(BaseModel):
    api_keys: list[ApiKeySpec] = Field(
        default_factory=list,
        description='API keys as JSON, e.g. [{"id":"site","sha256":"...","tenant":"acme","roles":["chat"]}]. '
        "Empty: open access (refused in prod).",
    )
    token_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key that signs widget tokens (32+ characters). Unset in dev: a random key "
        "per process (tokens die with it); required in prod.",
    )
    widget_token_ttl_seconds: int = Field(
        600, ge=1, description="Lifetime of a widget token minted without ttl_seconds."
    )
    widget_token_max_ttl_seconds: int = Field(
        86_400, ge=1, description="Longest lifetime a widget token may be minted with (longer: 422)."
    )


class Settings(BaseSettings):
    """Everything the service can be told. Build it once in __main__ (or a test) and pass it down."""

    model_config = SettingsConfigDict(env_prefix="CHATBOT_", env_nested_delimiter="__", extra="ignore")

    env: Literal["dev", "prod"] = Field(
        "dev", description="prod refuses placeholder secrets and open access."
    )
    embedding_provider: Literal["auto", "local", "openai", "cohere"] = Field(
        "auto", description="auto = openai if its key is set, else cohere if its key is set, else local."
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
