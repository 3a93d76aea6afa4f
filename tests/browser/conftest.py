"""Browser ring: the widget in real headless Chromium (Debian's /usr/bin/chromium, driven by playwright's
async API on the test's own event loop, next to the app served by hypercorn).

Chromium is provisioned by scripts/provision.sh (`make provision`); when it is missing these tests fail
with a message that says so, they never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright
from quart import Quart, Response

from chatbot.app import create_app
from chatbot.providers.base import ChatChunk, ChatModel, ChatRequest
from chatbot.providers.extractive import pieces
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services, build_services
from tests.conftest import make_settings
from tests.serving import serve_app

CHROMIUM = Path(os.environ.get("CHATBOT_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

# Records every websocket the page opens, the frames it receives and the frames it sends, without any test
# hook in the widget itself.
RECORD_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = []; window.__frames = []; window.__sent = [];
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      window.__sockets.push(this);
      this.addEventListener("message", (e) => window.__frames.push(JSON.parse(e.data)));
    }
    send(data) { window.__sent.push(JSON.parse(data)); return super.send(data); }
  };
})();
"""


class SlowChatModel:
    """The offline model, paced: a pause after each piece, so a browser can watch, stop, drop mid-answer."""

    def __init__(self, inner: ChatModel, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.name = inner.name
        self.max_context_tokens = inner.max_context_tokens

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async with contextlib.aclosing(self.inner.stream_reply(request)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                yield chunk
                await asyncio.sleep(self.delay)


class ScriptedChatModel:
    """Answers every question with the same text, in word-sized pieces (to test what the widget renders)."""

    name = "scripted"
    max_context_tokens = 100_000

    def __init__(self, text: str) -> None:
        self.text = text

    async def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        for piece in pieces(self.text):
            yield ChatChunk(delta=piece)
            await asyncio.sleep(0)
        yield ChatChunk(finish_reason="stop", prompt_tokens=1, completion_tokens=len(self.text.split()))


@dataclass
class Site:
    """A second origin (another 127.0.0.1 port) serving the pages a test puts in `pages`."""

    url: str = ""
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return self.url


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    found = Site()
    app = Quart("site")

    @app.get("/<name>")
    async def page(name: str) -> Response:
        if name not in found.pages:
            return Response("not found", status=404)
        return Response(found.pages[name], content_type="text/html; charset=utf-8")

    async with serve_app(app) as url:
        found.url = url
        yield found


def embed_page(server: str, **data: str) -> str:
    """A host page with its own hostile-ish CSS and the widget's one script tag."""
    attributes = " ".join(f"data-{k.replace('_', '-')}={json.dumps(v)}" for k, v in data.items())
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>A site</title>"
        "<style>* { font-family: 'Comic Sans MS', cursive !important; color: #f0f !important; }"
        " button { background: lime !important; } p { margin: 80px; }</style></head>"
        "<body><h1>Some site</h1><p>Its own content.</p>"
        f'<script src="{server}/widget.js" data-server="{server}" {attributes} defer></script></body></html>'
    )


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium; missing, the test fails (never skips) and says how to provision it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser ring needs it. Run `make provision` "
            "(scripts/provision.sh installs Debian's chromium as root) or `apt-get install chromium`.",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh Chromium profile; every page in it records its websockets (see RECORD_SOCKETS)."""
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=str(chromium),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1100, "height": 760},
        )
        await context.add_init_script(RECORD_SOCKETS)
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    """A page whose uncaught script errors fail the test."""
    errors: list[str] = []
    tab = await browser.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    assert errors == [], f"uncaught errors in the page: {errors}"


async def screenshot(page: Page, name: str) -> None:
    """tests/artifacts/<name>.png, with animations finished and the mouse out of the way (no hover states)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.mouse.move(0, 0)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), animations="disabled")


ServeFactory = Callable[..., contextlib.AbstractAsyncContextManager[tuple[str, Services]]]


@pytest.fixture
def serve_chat(
    offline_providers: Providers, guide_store: VectorStore, browser: BrowserContext
) -> ServeFactory:
    """serve_chat(delay=0.02, chat=None, **settings) -> async context of (base URL, services): the real app
    with the offline models (the chat model paced by `delay` seconds per piece, or `chat` instead) and the
    guide store. On exit it closes the browser's pages first: no websocket is open when the server stops."""

    @contextlib.asynccontextmanager
    async def serve(
        delay: float = 0.0, chat: ChatModel | None = None, **overrides: Any
    ) -> AsyncIterator[tuple[str, Services]]:
        if chat is None:
            chat = SlowChatModel(offline_providers.chat, delay) if delay else offline_providers.chat
        providers = Providers(
            embedder=offline_providers.embedder, sparse=offline_providers.sparse, chat=chat, reranker=None
        )
        settings = make_settings(**overrides)
        async with (
            build_services(settings, providers=providers, store=guide_store) as svc,
            serve_app(create_app(svc.settings, services=svc)) as url,
        ):
            try:
                yield url, svc
            finally:
                for tab in browser.pages:
                    await tab.close()

    return serve
