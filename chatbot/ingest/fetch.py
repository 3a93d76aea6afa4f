"""Fetch a web page, or every page of a sitemap, for ingestion: httpx, bounded in every direction.

A URL a stranger gives us is hostile until checked: only http(s); its host is resolved and refused when any
address is loopback, private, link-local, multicast or otherwise not global (unless inside one of
fetch.allowed_networks), and
the address the connection actually reached is checked again (a DNS answer that changes between our lookup
and httpx's is caught); redirects are followed by hand, each hop checked the same way, at most
fetch.max_redirects; the Content-Type must be a page type (or XML, for a sitemap) before the body is read;
the body is refused past fetch.max_bytes while streaming; every request has fetch.timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from chatbot.errors import BadRequest, ChatbotError, PayloadTooLarge, UnreadableDocument, UnsupportedMediaType
from chatbot.settings_ingest import FetchSettings

PAGE_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "application/pdf": ".pdf",
}
SITEMAP_TYPES = frozenset({"application/xml", "text/xml"})
_LOC = re.compile(rb"<loc>\s*([^<\s]+)\s*</loc>", re.IGNORECASE)  # no XML parser: no entities, no bombs


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    source: str  # the name the document is stored under: the URL, with the suffix its type implies
    data: bytes
    content_type: str


class AddressNotAllowed(BadRequest):
    code = "address_not_allowed"
    default_message = "That URL points to a private or local network address, which is not allowed."


def is_allowed(address: str, settings: FetchSettings) -> bool:
    """A public unicast address, or one inside fetch.allowed_networks."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in settings.allowed_networks if net.version == ip.version):
        return True
    return ip.is_global and not ip.is_multicast


async def check_host(url: str, settings: FetchSettings) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to a non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("Only http:// and https:// URLs can be fetched.", code="unsupported_url")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UnreadableDocument(f"{parts.hostname} could not be resolved.", code="fetch_failed") from None
    if not infos or not all(is_allowed(str(info[4][0]), settings) for info in infos):
        raise AddressNotAllowed()


def _check_peer(response: httpx.Response, settings: FetchSettings) -> None:
    """The address the connection reached (not the one we looked up) must be allowed too."""
    stream: Any = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer or not is_allowed(str(peer[0]), settings):
        raise AddressNotAllowed()


def source_name(url: str, suffix: str) -> str:
    """The URL, with the suffix of its content type when its path has another one (the loaders read it)."""
    path = urlsplit(url).path
    if path.lower().endswith(suffix) or (suffix == ".html" and path.lower().endswith(".htm")):
        return url
    return url + ("index" if path.endswith("/") or not path else "") + suffix


async def fetch_one(
    client: httpx.AsyncClient, url: str, settings: FetchSettings, *, sitemap_ok: bool = True
) -> Page:
    """GET `url` with every check of the module docstring; the final URL's page."""
    for _hop in range(settings.max_redirects + 1):
        await check_host(url, settings)
        try:
            async with client.stream("GET", url) as response:
                _check_peer(response, settings)
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("location", ""))
                    continue
                if response.status_code != 200:
                    raise UnreadableDocument(
                        f"{url} answered HTTP {response.status_code}.", code="fetch_failed"
                    )
                media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if media not in PAGE_TYPES and not (sitemap_ok and media in SITEMAP_TYPES):
                    raise UnsupportedMediaType(
                        f"{url} is {media or 'of no type'}; pages are HTML, text, Markdown or PDF.",
                        code="unsupported_content_type",
                    )
                data = await _read_bounded(response, settings.max_bytes)
        except httpx.HTTPError:
            raise UnreadableDocument(f"{url} could not be fetched.", code="fetch_failed") from None
        suffix = PAGE_TYPES.get(media, ".xml")
        return Page(url=url, source=source_name(url, suffix), data=data, content_type=media)
    raise BadRequest(f"More than {settings.max_redirects} redirects.", code="too_many_redirects")


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The page is larger than {limit:,} bytes.", code="page_too_large")
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The page is larger than {limit:,} bytes.", code="page_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def sitemap_urls(data: bytes, limit: int) -> list[str]:
    """The <loc> URLs of a sitemap, in order, without duplicates, at most `limit`."""
    seen: dict[str, None] = {}
    for match in _LOC.finditer(data):
        seen.setdefault(match.group(1).decode("utf-8", "replace").replace("&amp;", "&"), None)
        if len(seen) >= limit:
            break
    return list(seen)


def fetch_client(settings: FetchSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=settings.timeout,
        follow_redirects=False,  # each hop is checked by fetch_one
        trust_env=False,  # no proxy from the environment: the address check must see the real peer
        headers={"User-Agent": settings.user_agent},
    )


async def fetch_pages(url: str, settings: FetchSettings, *, progress: Any = None) -> AsyncIterator[Page]:
    """The page at `url`, or each page its sitemap lists (a page that fails is an error in `progress` and
    the others go on; without `progress` it raises)."""
    async with fetch_client(settings) as client:
        first = await fetch_one(client, url, settings)
        if first.content_type not in SITEMAP_TYPES:
            if progress is not None:
                progress.files_total = 1
            yield first
            return
        locs = sitemap_urls(first.data, settings.max_pages)
        if progress is not None:
            progress.files_total = len(locs)
        for loc in locs:
            try:
                page = await fetch_one(client, urljoin(first.url, loc), settings, sitemap_ok=False)
            except ChatbotError as exc:
                if progress is None:
                    raise
                progress.add_error(loc, exc)
                continue
            yield page
