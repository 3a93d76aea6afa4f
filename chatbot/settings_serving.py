"""Settings of serving traffic: binding, request and connection limits, streaming, deadlines and quotas.

Part of the one settings tree in chatbot/settings.py, which re-exports every name here: a separate module
because these sections change with the transports and admission (api/, chat/), not with storage or models.
Import from chatbot.settings.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field, field_validator


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

    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes serving one port (`serve --workers N`). Above 1 every worker must see the same "
        "state: needs CHATBOT_REDIS__URL, jobs.backend=redis and a Qdrant server (or embedded_replicas).",
    )
    embedded_replicas: bool = Field(
        False,
        description="With workers > 1 and the embedded store: each worker serves a read-only copy of the "
        "collection taken at start (writes get 409 store_read_only: ingest before serving).",
    )
    uvloop: bool = Field(True, description="Run hypercorn on uvloop when it is installed.")
    ingest_on_start: bool = Field(
        True, description="`serve` ingests docs/guide when the collection is empty."
    )
    looplag_threshold_ms: float = Field(
        100.0, gt=0, description="Warn (naming what ran) when the event loop wakes this many ms too late."
    )
    websocket_compression: bool = Field(
        True,
        description="Accept permessage-deflate when a websocket client offers it: a token frame goes from ~105 "
        "to ~16 bytes, for ~8% more server CPU per turn and ~300 KB of zlib state per connection.",
    )


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
