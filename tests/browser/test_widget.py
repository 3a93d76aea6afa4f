"""The embeddable widget in real headless Chromium: the demo page, streaming, stop, origins, safe rendering,
and resuming after a dropped connection. Screenshots of key states go to tests/artifacts/."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import ScriptedChatModel, ServeFactory, Site, embed_page, screenshot

pytestmark = pytest.mark.browser

QUESTION = "How do I connect over websocket?"
SHADOW = "document.querySelector('[data-chatbot-widget]').shadowRoot"


async def open_chat(page: Page) -> None:
    await page.get_by_role("button", name="Open chat: Ask the docs").click()
    await expect(page.get_by_role("dialog", name="Ask the docs")).to_be_visible()


async def ask(page: Page, question: str) -> Locator:
    """Type a question and press Enter; returns the locator of the answer's body."""
    box = page.get_by_label("Your question")
    await box.fill(question)
    await box.press("Enter")
    return page.locator(".m.b").last.locator(".md")


async def wait_answer_end(page: Page) -> None:
    await expect(page.locator(".m.b").last).not_to_have_attribute("aria-busy", "true", timeout=15_000)


async def frames(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate("window.__frames")
    return found


async def sent(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate("window.__sent")
    return found


async def wait_words(body: Locator, count: int) -> str:
    """Wait until the streaming answer shows at least `count` words; return its text then."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = await body.inner_text()
        if len(text.split()) >= count:
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"the answer never reached {count} words")


class TestDemoPage:
    async def test_demo_page_loads_the_widget_accessibly(self, served: str, page: Page) -> None:
        """GET / shows the bubble; opening focuses the input; Escape closes and refocuses the bubble."""
        response = await page.goto(served + "/")
        assert response is not None
        assert "script-src 'self'" in response.headers["content-security-policy"]
        bubble = page.get_by_role("button", name="Open chat: Ask the docs")
        await expect(bubble).to_be_visible()
        await expect(bubble).to_have_attribute("aria-expanded", "false")
        assert await page.evaluate(f"getComputedStyle({SHADOW}.querySelector('.bub')).backgroundColor") == (
            "rgb(37, 99, 235)"
        ), "the widget's styles apply under the demo page's strict CSP"
        await expect(page.get_by_role("dialog")).to_be_hidden()
        await screenshot(page, "widget-closed")

        await open_chat(page)
        assert await page.evaluate(f"{SHADOW}.activeElement.getAttribute('aria-label')") == "Your question"
        await expect(page.get_by_role("log")).to_have_attribute("aria-live", "polite")
        await expect(page.get_by_role("button", name="Close chat").first).to_be_visible()
        await screenshot(page, "widget-open")
        await page.keyboard.press("Tab")
        focused = f"getComputedStyle({SHADOW}.activeElement)"
        assert await page.evaluate(f"{SHADOW}.activeElement.textContent") == "Send"
        assert await page.evaluate(f"{focused}.outlineStyle + ' ' + {focused}.outlineWidth") == "solid 2px"

        await page.keyboard.press("Escape")
        await expect(page.get_by_role("dialog")).to_be_hidden()
        assert await page.evaluate(f"{SHADOW}.activeElement.className") == "bub"
        await expect(bubble).to_have_attribute("aria-expanded", "false")

        animation = f"getComputedStyle({SHADOW}.querySelector('.p')).animationName"
        await open_chat(page)
        assert await page.evaluate(animation) == "in"
        await page.emulate_media(reduced_motion="reduce")
        assert await page.evaluate(animation) == "none", "prefers-reduced-motion turns animations off"

        await page.set_viewport_size({"width": 375, "height": 667})
        box = await page.get_by_role("dialog").bounding_box()
        assert box == {"x": 0, "y": 0, "width": 375, "height": 667}, "on a phone the panel fills the screen"
        await screenshot(page, "widget-phone")


class TestStreaming:
    async def test_answer_streams_with_cited_sources(self, serve_chat: ServeFactory, page: Page) -> None:
        """Tokens render progressively; [n] citations link to footnoted sources; a follow-up continues."""
        async with serve_chat(delay=0.015) as (url, _):
            await page.goto(url + "/")
            await open_chat(page)
            body = await ask(page, QUESTION)
            lengths: list[int] = []
            while await page.locator(".m.b").last.get_attribute("aria-busy") == "true":
                lengths.append(len(await body.inner_text()))
                await asyncio.sleep(0.03)
            await screenshot(page, "widget-answer")
            text = await body.inner_text()

            grown = sorted(set(lengths))
            assert len(grown) >= 3, f"the text should grow while streaming, saw lengths {grown}"
            assert lengths == sorted(lengths)
            tokens = [f for f in await frames(page) if f["type"] == "token"]
            assert len(tokens) > 3
            assert "extractive" in text.lower()
            footnotes = page.locator("ol.src li")
            assert await footnotes.count() >= 1
            assert "websocket" in (await footnotes.all_inner_texts())[0].lower()
            cites = page.locator("a.c")
            assert await cites.count() >= 1
            first = cites.first
            target = (await first.get_attribute("href") or "").lstrip("#")
            await first.click()
            await expect(page.locator(f"li#{target}")).to_be_focused()
            assert page.url.endswith("/"), "a citation does not navigate the host page"
            ask_frame = next(f for f in await sent(page) if f["type"] == "ask")
            assert ask_frame == {"type": "ask", "message": QUESTION}

            await ask(page, "and how do I stop it?")
            await wait_answer_end(page)
            start = next(f for f in await frames(page) if f["type"] == "start")
            asks = [f for f in await sent(page) if f["type"] == "ask"]
            assert asks[1]["conversation_id"] == start["conversation_id"], (
                "a follow-up keeps the conversation"
            )
            assert await page.locator(".m.u").count() == 2


class TestStop:
    async def test_stop_button_stops_the_answer(self, serve_chat: ServeFactory, page: Page) -> None:
        """Stop sends a stop frame; the answer ends with a stopped frame and marker, and stops growing."""
        async with serve_chat(delay=0.05) as (url, _):
            await page.goto(url + "/")
            await open_chat(page)
            body = await ask(page, QUESTION)
            stop = page.get_by_role("button", name="Stop the answer")
            await expect(stop).to_be_visible()
            await wait_words(body, 4)
            await stop.click()
            await expect(page.locator(".stopped")).to_have_text("Stopped.")
            await expect(stop).to_be_hidden()
            await expect(page.get_by_role("button", name="Send")).to_be_visible()
            await screenshot(page, "widget-stopped")
            text = await body.inner_text()
            await asyncio.sleep(0.3)
            assert await body.inner_text() == text

            start = next(f for f in await frames(page) if f["type"] == "start")
            assert {"type": "stop", "message_id": start["message_id"]} in await sent(page)
            ends = [f["type"] for f in await frames(page) if f["type"] in ("done", "stopped", "error")]
            assert ends == ["stopped"]
            async with httpx.AsyncClient(base_url=url) as client:
                turns = (await client.get(f"/v1/conversations/{start['conversation_id']}")).json()["turns"]
            assert turns[-1]["stopped"] is True


class TestOrigins:
    async def test_other_origin_is_refused_unless_allowed(
        self, serve_chat: ServeFactory, site: Site, page: Page
    ) -> None:
        """A page on an origin missing from allowed_origins cannot connect and says so; with a token from the
        site's backend (data-token-url), or once listed, it works (and the page's CSS stays out)."""
        async with serve_chat() as (url, _):
            site.pages["page.html"] = embed_page(url)
            await page.goto(site.url + "/page.html")
            await open_chat(page)
            await ask(page, QUESTION)
            await expect(page.get_by_role("status")).to_contain_text("Can't connect to the chat server")
            await screenshot(page, "widget-refused")
            assert [f for f in await frames(page) if f.get("type") == "token"] == []

            async with httpx.AsyncClient(base_url=url) as client:  # the site's backend mints for its page
                minted = (await client.post("/v1/widget/tokens", json={"origin": site.origin})).json()
            site.pages["token"] = json.dumps({"token": minted["token"]})
            site.pages["tokened.html"] = embed_page(url, token_url="/token")
            tokened = await page.context.new_page()
            await tokened.goto(site.url + "/tokened.html")
            await open_chat(tokened)
            body = await ask(tokened, QUESTION)
            await wait_answer_end(tokened)
            assert "extractive" in (await body.inner_text()).lower(), "a token admits its origin"
            socket_url = await tokened.evaluate("window.__sockets[0].url")
            assert socket_url.endswith("/v1/ws?token=" + minted["token"])

        async with serve_chat(server={"allowed_origins": [site.origin]}) as (url, _):
            allowed = await page.context.new_page()
            site.pages["page.html"] = embed_page(url, title="Ask the docs", color="#0f766e", position="left")
            await allowed.goto(site.url + "/page.html")
            await open_chat(allowed)
            body = await ask(allowed, QUESTION)
            await wait_answer_end(allowed)
            assert "extractive" in (await body.inner_text()).lower()
            style = await allowed.evaluate(
                f"(() => {{ const s = getComputedStyle({SHADOW}.querySelector('.go'));"
                " return [s.fontFamily, s.backgroundColor]; })()"
            )
            assert "Comic" not in style[0]
            assert style[1] == "rgb(15, 118, 110)"
            box = await allowed.get_by_role("button", name="Close chat").last.bounding_box()
            assert box is not None
            assert box["x"] < 100, "data-position=left puts the bubble on the left"
            await screenshot(allowed, "widget-other-origin-left")


HOSTILE = (
    "# Widget safety notes\n\n"
    'The zebra handbook says <img src=x onerror="window.__pwned=1"> is only an example of zebra markup. '
    "The zebra handbook also says <b>bold</b> zebra tags stay as text. "
    "The zebra handbook links [zebra click](javascript:window.__pwned=2) for nobody.\n"
)


class TestSafety:
    async def test_model_html_is_shown_as_text(
        self, serve_chat: ServeFactory, site: Site, page: Page
    ) -> None:
        """HTML in a document (so in the answer) stays literal text: no element, no script, no js: link."""
        async with serve_chat() as (url, svc):
            await svc.ingestor.ingest_bytes("widget-xss", "zebra.md", HOSTILE.encode())
            async with httpx.AsyncClient(base_url=url) as client:
                minted = await client.post(
                    "/v1/widget/tokens",
                    json={"origin": site.origin},
                    headers={"X-Chatbot-Tenant": "widget-xss"},
                )
            token = minted.json()["token"]
            site.pages["page.html"] = embed_page(url, token=token)
            await page.goto(site.url + "/page.html")
            await open_chat(page)
            body = await ask(page, "What does the zebra handbook say about markup and tags?")
            await wait_answer_end(page)
            await screenshot(page, "widget-html-as-text")
            text = await body.inner_text()
            assert '<img src=x onerror="window.__pwned=1">' in text
            assert "<b>bold</b>" in text
            assert await page.evaluate(f"{SHADOW}.querySelectorAll('img, b, script, iframe').length") == 0
            assert await page.evaluate(f"{SHADOW}.querySelectorAll('a[href^=\"javascript\"]').length") == 0
            assert await page.evaluate("typeof window.__pwned") == "undefined"


MARKDOWN = (
    "Intro with **bold [1]** and *em* and `a <b>code</b>` span.\n\n"
    "- item one\n- item *two*\n\n"
    "3. third\n4. fourth\n\n"
    "```python\nprint('<script>window.__pwned=4</script>')\n```\n\n"
    "See [the docs](https://example.com/docs) or https://example.org/page. "
    "Not [this](javascript:window.__pwned=5) nor [that](data:text/html,x).\n"
    "<script>window.__pwned=3</script>"
)


class TestMarkdown:
    async def test_markdown_becomes_elements_and_links_are_safe(
        self, serve_chat: ServeFactory, page: Page
    ) -> None:
        """Bold, em, code, lists, fences and http(s) links render as elements; other schemes stay text."""
        async with serve_chat(chat=ScriptedChatModel(MARKDOWN)) as (url, _):
            await page.goto(url + "/")
            await open_chat(page)
            body = await ask(page, QUESTION)
            await wait_answer_end(page)
            await screenshot(page, "widget-markdown")
            assert await body.locator("strong").inner_text() == "bold [1]"
            await expect(body.locator("strong a.c")).to_have_attribute("href", "#a1-1")
            assert await body.locator("em").all_inner_texts() == ["em", "two"]
            assert await body.locator("p code").inner_text() == "a <b>code</b>"
            assert await body.locator("ul li").all_inner_texts() == ["item one", "item two"]
            assert await body.locator("ol li").all_inner_texts() == ["third", "fourth"]
            await expect(body.locator("ol")).to_have_attribute("start", "3")
            assert await body.locator("pre code").inner_text() == "print('<script>window.__pwned=4</script>')"
            links = body.locator("a:not(.c)")
            hrefs = [await links.nth(i).get_attribute("href") for i in range(await links.count())]
            assert hrefs == ["https://example.com/docs", "https://example.org/page"]
            for i in range(2):
                await expect(links.nth(i)).to_have_attribute("rel", "noopener noreferrer")
                await expect(links.nth(i)).to_have_attribute("target", "_blank")
            text = await body.inner_text()
            assert "[this](javascript:window.__pwned=5)" in text
            assert "<script>window.__pwned=3</script>" in text
            assert await page.evaluate(f"{SHADOW}.querySelectorAll('script, b, img').length") == 0
            assert await page.evaluate("typeof window.__pwned") == "undefined"


class TestReconnect:
    async def test_dropped_connection_resumes_without_gaps(
        self, serve_chat: ServeFactory, page: Page
    ) -> None:
        """Closing the socket mid-answer reconnects, resumes after the last seq, ends with the full answer."""
        async with serve_chat(delay=0.02) as (url, _):
            reference = await page.context.new_page()  # the same question, undisturbed, alongside
            for tab in (reference, page):
                await tab.goto(url + "/")
                await open_chat(tab)
            expected_body = await ask(reference, QUESTION)
            await page.bring_to_front()  # a background tab renders only at the end (requestAnimationFrame)
            body = await ask(page, QUESTION)
            await wait_words(body, 10)
            await page.evaluate("window.__sockets.at(-1).close()")
            await wait_answer_end(reference)
            await wait_answer_end(page)
            await screenshot(page, "widget-resumed")
            assert await body.inner_text() == await expected_body.inner_text()

            assert await page.evaluate("window.__sockets.length") == 2
            resume = next(f for f in await sent(page) if f["type"] == "resume")
            assert resume["after"] > 2
            got = await frames(page)
            seqs = [f["seq"] for f in got if f.get("message_id") == resume["message_id"]]
            assert seqs == list(range(1, len(seqs) + 1)), "every seq exactly once, in order"
            assert got[-1]["type"] == "done"
            await expect(page.get_by_role("status")).to_be_hidden()


class TestFeedback:
    async def test_thumbs_by_keyboard_reach_the_server_and_the_export(
        self, serve_chat: ServeFactory, page: Page
    ) -> None:
        """Under a finished answer, Tab to 'Not helpful' and press Enter: the rating is stored (a changed vote
        replaces it) and the export has the question, answer and sources."""
        async with serve_chat() as (url, svc):
            await page.goto(url + "/")
            await open_chat(page)
            await ask(page, QUESTION)
            await wait_answer_end(page)
            group = page.get_by_role("group", name="Rate this answer")
            up = group.get_by_role("button", name="Helpful", exact=True)
            down = group.get_by_role("button", name="Not helpful")
            await expect(up).to_have_attribute("aria-pressed", "false")
            await up.click()
            await expect(up).to_have_attribute("aria-pressed", "true")
            await up.focus()
            await page.keyboard.press("Tab")
            assert await page.evaluate(f"{SHADOW}.activeElement.getAttribute('aria-label')") == "Not helpful"
            await page.keyboard.press("Enter")
            await expect(down).to_have_attribute("aria-pressed", "true")
            await expect(up).to_have_attribute("aria-pressed", "false")
            await screenshot(page, "widget-feedback")
            assert svc.feedback is not None
            rows = [row async for row in svc.feedback.export()]
            answer_text = await page.locator(".m.b").last.locator(".md").inner_text()
        assert len(rows) == 1, "one browser, one vote: the second replaced the first"
        row = rows[0]
        assert (row["question"], row["rating"]) == (QUESTION, "down")
        assert row["sources"], "the answer's sources are kept with the rating"
        assert row["answer"].split()[:3] == answer_text.split()[:3]
