"""The OpenAI Chat Completions request (POST /v1/chat/completions), validated. Pure: no I/O, no app context.
Responses, streams and errors are openai_wire.py's.

- Request: `messages` (system/developer, user, assistant (with `tool_calls`), tool (with `tool_call_id`);
  string content or a list of {"type": "text"} parts), `model`, `stream`, `stream_options.include_usage`,
  `max_tokens` / `max_completion_tokens`, `temperature`, `stop`, `seed`, `response_format`, `tools`,
  `tool_choice` (passed to the chat model; a model that cannot honour one refuses the request with 400
  `unsupported_option` naming it), `n` (only 1: more is a 400 naming `n`). Other fields are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chatbot.api.wire import FILTER_DESCRIPTION
from chatbot.errors import BadRequest, NotFound
from chatbot.providers.base import PLAIN, ChatMessage, GenerationOptions, Tool, ToolCall
from chatbot.stores.base import MetadataFilter

MODEL_ID = "chatbot"
"""The one model id: answers from the caller's tenant's documents (X-Chatbot-Tenant, else the default)."""


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=100_000)


class MessageToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[MessageToolCall] | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _tool_fields(self) -> Message:
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs tool_call_id")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message carries tool_calls")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise UnsupportedContent()
            texts.append(part.text)
        return "\n".join(texts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(None, max_length=10_000)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionDef


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: dict[Literal["name"], str]


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")  # json_schema's body goes to the model as sent

    type: Literal["text", "json_object", "json_schema"]


class ChatCompletionBody(BaseModel):
    """POST /v1/chat/completions (the fields we use; the rest of OpenAI's request is ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, json_schema_extra={"enum": [MODEL_ID]})  # else 404 model_not_found
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is generated: n > 1 is a 400.")
    stop: str | Annotated[list[str], Field(max_length=4)] | None = Field(
        None, description="Up to 4 stop sequences."
    )
    seed: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    metadata_filter: MetadataFilter | None = Field(
        None, description="Extension (openai SDK: extra_body={'metadata_filter': ...}). " + FILTER_DESCRIPTION
    )

    def chat_messages(self) -> list[ChatMessage]:
        """system and developer messages become 'system' (dropped later: our prompts define the assistant)."""
        out = []
        for m in self.messages:
            role: Literal["system", "user", "assistant", "tool"] = (
                "system" if m.role == "developer" else m.role
            )
            calls = tuple(
                ToolCall(c.id, c.function.name, c.function.arguments, index=i)
                for i, c in enumerate(m.tool_calls or ())
            )
            out.append(ChatMessage(role, m.text(), tool_calls=calls, tool_call_id=m.tool_call_id))
        return out

    @property
    def options(self) -> GenerationOptions:
        """The generation options asked for (PLAIN when none)."""
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        options = GenerationOptions(
            stop=tuple(s for s in stop if s),
            seed=self.seed,
            response_format=(
                self.response_format.model_dump()
                if self.response_format and self.response_format.type != "text"  # text: the default
                else None
            ),
            tools=tuple(
                Tool(t.function.name, t.function.description, t.function.parameters, t.function.strict)
                for t in self.tools or ()
            ),
            tool_choice=(
                self.tool_choice.model_dump() if isinstance(self.tool_choice, BaseModel) else self.tool_choice
            ),
        )
        return PLAIN if options.plain else options

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class UnsupportedContent(BadRequest):
    code = "unsupported_content"
    default_message = "Only text content parts are supported."


class ModelNotFound(NotFound):
    code = "model_not_found"
    default_message = f"The model does not exist; this server answers as '{MODEL_ID}' (see GET /v1/models)."


def check_model(model: str) -> None:
    if model != MODEL_ID:
        raise ModelNotFound()
