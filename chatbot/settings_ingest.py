"""Settings of ingestion (jobs, folder sync, parsing uploads, URL fetch); re-exported by chatbot.settings."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class JobSettings(BaseModel):
    backend: Literal["local", "redis"] = Field(
        "local",
        description="Where ingestion jobs run: local = asyncio tasks of the serving process; redis = saq "
        "workers (`python -m chatbot worker`) over CHATBOT_REDIS__URL, visible from every instance.",
    )
    upload_job_bytes: int = Field(
        2 * 1024 * 1024,
        ge=0,
        description="An upload whose files total more than this runs as a background job (202 + job id).",
    )
    concurrency: int = Field(2, ge=1, le=64, description="Ingestion jobs running at once per process/worker.")
    keep_seconds: float = Field(
        3600.0,
        gt=0,
        description="How long a finished job's progress stays readable (GET /v1/ingest/jobs/ID).",
    )
    state_dir: Path = Field(
        Path("./data/sync"), description="Where `sync` keeps its manifests (one per tenant and folder)."
    )
    sync_roots: list[Path] = Field(
        default_factory=list,
        description="Server-side folders POST /v1/ingest/sync may mirror (and their subfolders). Empty: the "
        "API syncs URLs only.",
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


class FetchSettings(BaseModel):
    allowed_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="Networks (CIDR) `ingest URL` and URL sync may reach although not public: loopback, private "
        'and link-local addresses are refused otherwise (e.g. ["10.1.0.0/16"] for an intranet wiki).',
    )
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Largest page or sitemap fetched.")
    max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed per URL.")
    max_pages: int = Field(200, ge=1, description="Pages fetched from one sitemap.")
    timeout: float = Field(15.0, gt=0, description="Connect/read timeout per request, seconds.")
    user_agent: str = Field("chatbot-ingest/1", description="User-Agent sent when fetching.")
