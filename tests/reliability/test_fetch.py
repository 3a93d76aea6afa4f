"""`ingest URL`: pages and sitemaps fetched from a real HTTP server on 127.0.0.1, and every way a URL may be
hostile (private targets, also after a redirect; redirect loops; oversized bodies; wrong content types)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatbot.errors import ChatbotError
from chatbot.ingest.fetch import fetch_pages, sitemap_urls
from chatbot.ingest.jobs import JobProgress
from chatbot.settings_ingest import FetchSettings
from tests.fakes.httpserver import Connection, HTTPServer, Request

HTML = b"<html><head><title>Page</title></head><body><h1>Hello</h1><p>The page text.</p></body></html>"


class Site:
    """A small site with good pages, a sitemap, and hostile answers."""

    def __init__(self) -> None:
        self.server = HTTPServer(self.handle)
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def handle(self, conn: Connection, req: Request) -> None:
        self.paths.append(req.path)
        html = {"content-type": "text/html; charset=utf-8"}
        if req.path == "/page.html":
            await conn.send(200, HTML, html)
        elif req.path == "/notes":
            await conn.send(200, b"# Notes\n\nPlain markdown notes.\n", {"content-type": "text/markdown"})
        elif req.path == "/sitemap.xml":
            locs = "".join(
                f"<url><loc>{self.url}{p}</loc></url>" for p in ("/page.html", "/notes", "/binary")
            )
            body = f'<?xml version="1.0"?><urlset>{locs}</urlset>'.encode()
            await conn.send(200, body, {"content-type": "application/xml"})
        elif req.path == "/binary":
            await conn.send(200, b"\x00" * 100, {"content-type": "application/octet-stream"})
        elif req.path == "/big":
            await conn.send(200, b"x" * 5000, html)
        elif req.path == "/big-chunked":
            await conn.start_stream(200, "text/html")
            for _ in range(10):
                await conn.send_chunk(b"y" * 1000)
            await conn.end_stream()
        elif req.path.startswith("/to/"):
            await conn.send(
                302, b"", {"location": req.path[len("/to/") :].replace("PORT", str(self.server.port))}
            )
        elif req.path == "/loop":
            await conn.send(302, b"", {"location": "/loop"})
        else:
            await conn.send(404, b"", html)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    await s.server.start()
    try:
        yield s
    finally:
        await s.server.aclose()
    assert s.server.handler_errors == []


LOOPBACK_ONLY = FetchSettings(allowed_networks=["127.0.0.1/32"], max_bytes=2048, max_redirects=3, timeout=5)  # type: ignore[list-item]


async def fetch_all(url: str, settings: FetchSettings, progress: Any = None) -> list[Any]:
    return [page async for page in fetch_pages(url, settings, progress=progress)]


async def refused(url: str, settings: FetchSettings) -> str:
    with pytest.raises(ChatbotError) as caught:
        await fetch_all(url, settings)
    return caught.value.code


class TestFetch:
    async def test_a_page_when_loopback_is_allowed(self, site: Site) -> None:
        """With 127.0.0.1/32 allowed, a page is fetched whole, named by its URL."""
        [page] = await fetch_all(site.url + "/page.html", LOOPBACK_ONLY)
        assert page.data == HTML
        assert page.source == site.url + "/page.html"
        assert page.content_type == "text/html"

    async def test_a_suffixless_page_is_named_by_its_type(self, site: Site) -> None:
        """A Markdown page at /notes is stored as /notes.md, so the loader knows its format."""
        [page] = await fetch_all(site.url + "/notes", LOOPBACK_ONLY)
        assert page.source == site.url + "/notes.md"

    async def test_a_sitemap_fetches_its_pages(self, site: Site) -> None:
        """A sitemap yields each listed page; a listed page of the wrong type is an error, the rest go on."""
        progress = JobProgress(id="t", tenant="t", kind="url")
        pages = await fetch_all(site.url + "/sitemap.xml", LOOPBACK_ONLY, progress)
        assert [p.source for p in pages] == [site.url + "/page.html", site.url + "/notes.md"]
        assert progress.files_total == 3
        assert [(e["source"], e["code"]) for e in progress.errors] == [
            (site.url + "/binary", "unsupported_content_type")
        ]

    async def test_a_followed_redirect(self, site: Site) -> None:
        """A redirect to an allowed address is followed to the page."""
        [page] = await fetch_all(site.url + "/to/http://127.0.0.1:PORT/page.html", LOOPBACK_ONLY)
        assert page.url.endswith("/page.html")


class TestHostileUrls:
    async def test_loopback_is_refused_by_default(self, site: Site) -> None:
        """Without allowed_networks, 127.0.0.1 is refused before any connection is made."""
        assert await refused(site.url + "/page.html", FetchSettings()) == "address_not_allowed"
        assert site.server.connections_total == 0

    @pytest.mark.parametrize(
        "target",
        ["http://127.0.0.2:PORT/page.html", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/"],
    )
    async def test_redirect_to_a_private_address_is_refused(self, site: Site, target: str) -> None:
        """A redirect to another loopback, link-local (cloud metadata) or private address is refused."""
        assert await refused(site.url + "/to/" + target, LOOPBACK_ONLY) == "address_not_allowed"
        assert site.paths == ["/to/" + target]

    async def test_ipv4_mapped_ipv6_loopback_is_refused(self, site: Site) -> None:
        """[::ffff:127.0.0.1] is loopback in disguise: refused by default."""
        url = f"http://[::ffff:127.0.0.1]:{site.server.port}/page.html"
        assert await refused(url, FetchSettings()) == "address_not_allowed"

    async def test_redirect_loop_is_bounded(self, site: Site) -> None:
        """A redirect loop ends after max_redirects hops with too_many_redirects."""
        assert await refused(site.url + "/loop", LOOPBACK_ONLY) == "too_many_redirects"
        assert len(site.paths) == LOOPBACK_ONLY.max_redirects + 1

    @pytest.mark.parametrize("path", ["/big", "/big-chunked"])
    async def test_oversized_bodies_are_refused(self, site: Site, path: str) -> None:
        """A body past max_bytes is refused, whether its length is declared or streamed chunked."""
        assert await refused(site.url + path, LOOPBACK_ONLY) == "page_too_large"

    async def test_wrong_content_type_is_refused(self, site: Site) -> None:
        """A binary content type is refused before its body is read."""
        assert await refused(site.url + "/binary", LOOPBACK_ONLY) == "unsupported_content_type"

    @pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http:///nohost"])
    async def test_other_schemes_are_refused(self, url: str) -> None:
        """Only http(s) URLs with a host are fetched."""
        assert await refused(url, LOOPBACK_ONLY) == "unsupported_url"

    def test_sitemap_parsing_is_bounded_and_entity_free(self) -> None:
        """<loc> entries are read without an XML parser (no entities) and capped at max_pages."""
        bomb = b'<!DOCTYPE x [<!ENTITY a "aaaa">]><urlset>' + b"<loc>http://e/&a;</loc>" * 10 + b"</urlset>"
        many = b"<urlset>" + b"".join(b"<loc>http://e/%d</loc>" % i for i in range(1000)) + b"</urlset>"
        assert sitemap_urls(bomb, 5) == ["http://e/&a;"]
        assert len(sitemap_urls(many, 200)) == 200
