"""Provider seams: small Protocols with one core method each. Nothing above providers/ sees an SDK type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from chatbot.errors import BadRequest

EmbedKind = Literal["query", "document"]


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked the client to run; `arguments` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str
    index: int = 0  # its position among the calls of one reply


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message. An assistant message may carry tool_calls; a 'tool' message answers one by its id."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the client offers the model (OpenAI's `tools[].function`)."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None  # a JSON schema
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """What a client may ask of the generation beyond max_tokens and temperature. Defaults ask nothing: a
    model that cannot honour a non-default option refuses the request (UnsupportedOption), never ignores it.

    - stop: up to 4 sequences; the reply ends before the first one (finish_reason "stop").
    - seed: best-effort determinism.
    - response_format: OpenAI's object ({"type": "text" | "json_object" | "json_schema", ...}).
    - tools / tool_choice: functions the model may call (tool_choice "none" | "auto" | "required" | a
      {"type": "function", "function": {"name"}} object); its calls come back as ChatChunk.tool_calls.
    """

    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None

    @property
    def plain(self) -> bool:
        """True when nothing beyond plain text generation is asked."""
        return self == PLAIN


PLAIN = GenerationOptions()


class UnsupportedOption(BadRequest):
    """The configured chat model cannot honour a request option; `param` names it."""

    code = "unsupported_option"

    def __init__(self, param: str, model: str) -> None:
        super().__init__(
            f"The option '{param}' is not supported by this server's chat model ({model}).",
            details={"param": param},
        )


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved passage as the chat model sees it: its citation number and text."""

    n: int
    text: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything a chat model may use. LLMs read `messages` (rendered from prompts/);
    the offline extractive model reads `question` and `passages` directly."""

    messages: Sequence[ChatMessage]
    question: str
    passages: Sequence[Passage] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    options: GenerationOptions = PLAIN
    # Messages after the question (an agent loop: the assistant's tool calls and the tool results).
    continuation: Sequence[ChatMessage] = ()
    # The question's dense vector when the retriever computed one (with the configured embedder): a model
    # that scores by meaning (extractive) need not embed the question again.
    query_vector: Sequence[float] | None = None


OPTIONS = ("stop", "seed", "response_format", "tools", "tool_choice", "messages")
"""What a chat model may be asked beyond text; "messages": tool calls and tool results in the messages."""


def check_options(request: ChatRequest, model: str, supported: frozenset[str]) -> None:
    """Refuse (UnsupportedOption, naming it) the first option the request asks for outside `supported`."""
    options = request.options
    asked = {
        "stop": bool(options.stop),
        "seed": options.seed is not None,
        "response_format": options.response_format is not None,
        "tools": bool(options.tools),
        "tool_choice": options.tool_choice not in (None, "none"),
        "messages": any(m.role == "tool" or m.tool_calls for m in [*request.messages, *request.continuation]),
    }
    for name in OPTIONS:
        if asked[name] and name not in supported:
            raise UnsupportedOption(name, model)


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """A piece of a streamed reply. The last chunk may carry usage and finish_reason with an empty delta."""

    delta: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None  # set by a model that answers for others (failover): who actually answered
    tool_calls: tuple[ToolCall, ...] = ()  # whole calls (a model assembles streamed fragments first)


@dataclass(frozen=True, slots=True)
class RankedPassage:
    index: int
    score: float


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into dense vectors, batch first."""

    name: str  # identity of the vector space, e.g. "local/all-MiniLM-L6-v2-int8"; recorded on collections
    dimensions: int
    distance: Literal["cosine", "dot"]

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]: ...


@runtime_checkable
class SparseEmbedder(Protocol):
    """Turns texts into sparse (BM25-style term) vectors; Qdrant applies IDF with the IDF modifier."""

    name: str

    async def embed_sparse(self, texts: Sequence[str], kind: EmbedKind) -> list[SparseVector]: ...


@runtime_checkable
class ChatModel(Protocol):
    """Streams a reply. Closing the iterator early must close the upstream stream."""

    name: str
    max_context_tokens: int

    def stream_reply(self, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...


@runtime_checkable
class Reranker(Protocol):
    name: str

    async def rerank(self, query: str, passages: Sequence[str], top_n: int) -> list[RankedPassage]: ...
