"""Name -> factory for every provider. SDKs are imported lazily inside the factories, and each SDK client is
built once per process (shared by that vendor's embedder, chat model and reranker) and closed on exit."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from chatbot.errors import ConfigError
from chatbot.providers.base import ChatModel, Embedder, Reranker, SparseEmbedder
from chatbot.providers.failover import FailoverChatModel, FailoverEmbedder
from chatbot.settings import Settings


@dataclass(slots=True)
class Providers:
    embedder: Embedder
    sparse: SparseEmbedder | None
    chat: ChatModel
    reranker: Reranker | None


class _Clients:
    """One SDK client per vendor, created on first use and registered for closing."""

    def __init__(self, settings: Settings, stack: AsyncExitStack) -> None:
        self.settings = settings
        self.stack = stack
        self._openai: Any = None
        self._openai_fallback: Any = None
        self._cohere: Any = None

    def openai(self) -> Any:
        if self._openai is None:
            module = _import("chatbot.providers.openai_models", "openai")
            self._openai = module.build_openai_client(self.settings.openai)
            self.stack.push_async_callback(self._openai.close)
        return self._openai

    def openai_fallback(self) -> Any:
        """A client for openai.fallback_base_url (a second deployment of the same models), or None."""
        if self._openai_fallback is None and self.settings.openai.fallback_base_url:
            module = _import("chatbot.providers.openai_models", "openai")
            fallback = self.settings.openai.model_copy(
                update={"base_url": self.settings.openai.fallback_base_url}
            )
            self._openai_fallback = module.build_openai_client(fallback)
            self.stack.push_async_callback(self._openai_fallback.close)
        return self._openai_fallback

    def cohere(self) -> Any:
        if self._cohere is None:
            module = _import("chatbot.providers.cohere_models", "cohere")
            self._cohere = module.build_cohere_client(self.settings.cohere)
            self.stack.push_async_exit(self._cohere)  # the SDK's __aexit__ closes its HTTP client
        return self._cohere


def _import(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the install
        hint = f"pip install {package}"
        raise ConfigError(f"The {package} provider needs the '{package}' package: {hint}") from exc


def build_providers(settings: Settings, stack: AsyncExitStack) -> Providers:
    clients = _Clients(settings, stack)
    embedder = _build_embedder(settings, clients, stack)
    chat = _build_chat(settings, clients, embedder)
    reranker = None
    if settings.retrieval.rerank and settings.cohere.api_key is not None:
        cohere_models = _import("chatbot.providers.cohere_models", "cohere")
        reranker = cohere_models.CohereReranker(clients.cohere(), settings.cohere)
    sparse: SparseEmbedder | None = None
    if settings.retrieval.mode != "dense":
        from chatbot.providers.local_models import BM25SparseEmbedder

        sparse = BM25SparseEmbedder()
    return Providers(embedder=embedder, sparse=sparse, chat=chat, reranker=reranker)


def _build_embedder(settings: Settings, clients: _Clients, stack: AsyncExitStack) -> Embedder:
    name = settings.resolved_embedding_provider
    if name == "openai":
        module = _import("chatbot.providers.openai_models", "openai")
        embedder: Embedder = module.OpenAIEmbedder(clients.openai(), settings.openai)
        if clients.openai_fallback() is not None:  # same models elsewhere: the same vector space
            second = module.OpenAIEmbedder(clients.openai_fallback(), settings.openai)
            embedder = FailoverEmbedder(
                [embedder, second],
                threshold=settings.failover.threshold,
                cooldown=settings.failover.cooldown_seconds,
            )
        return embedder
    if name == "cohere":
        module = _import("chatbot.providers.cohere_models", "cohere")
        embedder = module.CohereEmbedder(clients.cohere(), settings.cohere)
        return embedder
    from chatbot.providers.local_models import LocalEmbedder

    local = LocalEmbedder(settings.local)
    stack.push_async_callback(local.aclose)
    return local


def _build_chat(settings: Settings, clients: _Clients, embedder: Embedder) -> ChatModel:
    """The configured chat model; with failover, followed by every other configured one."""
    primary = settings.resolved_chat_provider
    if primary == "extractive":
        from chatbot.providers.extractive import ExtractiveChatModel

        return ExtractiveChatModel(settings.local, embedder=extractive_embedder(embedder))
    models = [_chat_model(primary, clients, settings)]
    if settings.failover.enabled:
        if primary == "openai" and clients.openai_fallback() is not None:
            models.append(_chat_model("openai-fallback", clients, settings))
        other = "cohere" if primary == "openai" else "openai"
        other_key = settings.cohere.api_key if other == "cohere" else settings.openai.api_key
        if other_key is not None:
            models.append(_chat_model(other, clients, settings))
    if len(models) == 1:
        return models[0]
    return FailoverChatModel(
        models, threshold=settings.failover.threshold, cooldown=settings.failover.cooldown_seconds
    )


def extractive_embedder(embedder: Embedder) -> Embedder | None:
    """The embedder the extractive answer scores sentences with: the one in use (the collection's), when it
    is the offline model. An API embedder is not used: it would add a paid, rate-limited call with its
    network latency to every answer of the offline mode (any Embedder works if passed in directly)."""
    return embedder if embedder.name.startswith("local/") else None


def _chat_model(name: str, clients: _Clients, settings: Settings) -> ChatModel:
    if name == "cohere":
        cohere_models = _import("chatbot.providers.cohere_models", "cohere")
        chat: ChatModel = cohere_models.CohereChatModel(clients.cohere(), settings.cohere)
        return chat
    openai_models = _import("chatbot.providers.openai_models", "openai")
    if name == "openai-fallback":
        chat = openai_models.OpenAIChatModel(clients.openai_fallback(), settings.openai)
        chat.name += "@fallback"  # distinguishes the two deployments in breakers and done.model
        return chat
    chat = openai_models.OpenAIChatModel(clients.openai(), settings.openai)
    return chat
