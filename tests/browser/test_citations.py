"""Citations users can check, in real headless Chromium: the widget lists each cited document once with its
cited chunks under it ([n], "p. 13", section), and a citation reached from the keyboard focuses its chunk."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

from playwright.async_api import BrowserContext, Page, expect

from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import MetadataFilter, QueryVectors, ScoredChunk, VectorStore
from chatbot.stores.records import DocumentInfo
from chatbot.wiring import build_services
from tests.browser.conftest import screenshot
from tests.browser.test_widget import QUESTION, ask, frames, open_chat, wait_answer_end
from tests.conftest import make_settings
from tests.serving import serve_app


class PagedStore:
    """The guide store, read as if its loader had stored pages: chunk i of a document is on page i + 10,
    and every third chunk runs onto the next page (what a PDF loader stores as page_start/page_end)."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner

    @property
    def has_sparse(self) -> bool:
        return self.inner.has_sparse

    async def search(
        self, tenant: str, queries: Sequence[QueryVectors], *, where: MetadataFilter | None = None, **kw: Any
    ) -> list[ScoredChunk]:
        hits = await self.inner.search(tenant, queries, where=where, **kw)
        return [
            dataclasses.replace(
                h, page_start=h.chunk_index + 10, page_end=h.chunk_index + 10 + (h.chunk_index % 3 == 2)
            )
            for h in hits
        ]

    async def list_documents(self, tenant: str) -> list[DocumentInfo]:
        return await self.inner.list_documents(tenant)

    def __getattr__(self, name: str) -> Any:  # lifecycle, writes, counts: the guide store's own
        return getattr(self.inner, name)


@contextlib.asynccontextmanager
async def serve_paged(
    providers: Providers, store: VectorStore, browser: BrowserContext
) -> AsyncIterator[str]:
    settings = make_settings(retrieval={"top_k": 6})
    async with (
        build_services(settings, providers=providers, store=PagedStore(store)) as svc,  # type: ignore[arg-type]
        serve_app(create_app(svc.settings, services=svc)) as url,
    ):
        try:
            yield url
        finally:
            for tab in browser.pages:
                await tab.close()


def page_label(source: dict[str, Any]) -> str:
    start, end = source["page_start"], source["page_end"]
    return f"pp. {start}\u2013{end}" if end > start else f"p. {start}"


class TestCitations:
    async def test_sources_are_grouped_by_document_with_pages(
        self, offline_providers: Providers, guide_store: VectorStore, browser: BrowserContext, page: Page
    ) -> None:
        """One entry per cited document; under it one entry per chunk with [n] and its page (p. / pp.)."""
        async with serve_paged(offline_providers, guide_store, browser) as url:
            await page.goto(url + "/")
            await open_chat(page)
            await ask(page, QUESTION)
            await wait_answer_end(page)
            await screenshot(page, "widget-citations")
            sources = next(f for f in await frames(page) if f["type"] == "sources")["sources"]
            docs = list(dict.fromkeys(s["doc_id"] for s in sources))
            assert len(docs) < len(sources), "the guide answers with several chunks of one document"
            entries = page.locator("ol.src > li")
            assert await entries.count() == len(docs)
            for i, doc_id in enumerate(docs):
                cited = [s for s in sources if s["doc_id"] == doc_id]
                chunks = entries.nth(i).locator("ul.refs > li")
                texts = await chunks.all_inner_texts()
                assert [t.split(" ")[0] for t in texts] == [f"[{s['n']}]" for s in cited]
                for text, s in zip(texts, cited, strict=True):
                    assert page_label(s) in text
                assert cited[0]["source"] in await entries.nth(i).inner_text()

    async def test_a_citation_is_reachable_from_the_keyboard(
        self, offline_providers: Providers, guide_store: VectorStore, browser: BrowserContext, page: Page
    ) -> None:
        """A citation is a link (in the tab order; its accessible name has the page): Enter on it focuses its
        chunk's entry without navigating the host page."""
        async with serve_paged(offline_providers, guide_store, browser) as url:
            await page.goto(url + "/")
            await open_chat(page)
            await ask(page, QUESTION)
            await wait_answer_end(page)
            cite = page.locator("a.c").first
            label = await cite.get_attribute("aria-label") or ""
            assert label.startswith("Source ")
            assert ", p" in label
            await cite.focus()
            await page.keyboard.press("Enter")
            target = (await cite.get_attribute("href") or "").lstrip("#")
            await expect(page.locator(f"li#{target}")).to_be_focused()
            assert page.url.endswith("/")
