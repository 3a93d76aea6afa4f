"""Starting an answer from a transport: validate the message, resolve the conversation, start the task."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

from quart import Response, request

from chatbot.api.context import services, tenant
from chatbot.api.sse import HEARTBEAT, Heartbeat, with_heartbeats
from chatbot.api.wire import check_message, parse_json
from chatbot.chat.answers import DISCONNECTED, AnswerManager, new_message_id
from chatbot.errors import BadRequest, PayloadTooLarge, UnknownConversation
from chatbot.ops.observability import message_context
from chatbot.providers.base import ChatMessage
from chatbot.rag.events import ChatEvent, is_terminal
from chatbot.rag.pipeline import AnswerRequest


async def start_answer(message: str, conversation_id: str | None) -> tuple[str, str]:
    """Returns (message_id, conversation_id). A new conversation is created when none is given."""
    svc = services()
    who = tenant()
    question = check_message(message, svc.settings.limits.max_message_chars)
    if conversation_id is None:
        conversation_id = await svc.conversations.create(who)
    elif not await svc.conversations.exists(who, conversation_id):
        raise UnknownConversation()
    message_id = new_message_id()
    await launch(
        AnswerRequest(tenant=who, question=question, message_id=message_id, conversation_id=conversation_id)
    )
    return message_id, conversation_id


async def launch(req: AnswerRequest) -> None:
    """Admit the answer under the tenant's quotas, then start its task."""
    svc = services()
    if svc.quotas is not None:
        await svc.quotas.begin_answer(req.tenant, req.message_id)
    try:
        with message_context(req.message_id):  # the task copies the context: its log lines carry message_id
            svc.answers.start(req)
    except BaseException:
        if svc.quotas is not None:
            await svc.quotas.abandon(req.message_id)
        raise


async def start_answer_with_history(
    messages: Sequence[ChatMessage], *, max_tokens: int | None = None, temperature: float | None = None
) -> str:
    """For clients that keep their own history (OpenAI-compatible API, AI SDK useChat): the last message is
    the question, earlier user/assistant messages are the history (system messages are dropped: our prompts
    define the assistant). Nothing is stored server-side. Returns the message_id."""
    turns = [m for m in messages if m.role != "system"]
    if not turns:
        raise BadRequest("Send at least one user message.", code="no_messages")
    *earlier, last = turns
    if last.role != "user":
        raise BadRequest("The last message must come from the user.", code="last_message_not_user")
    svc = services()
    question = check_message(last.content, svc.settings.limits.max_message_chars)
    history = tuple(m for m in earlier if m.content.strip())
    message_id = new_message_id()
    await launch(
        AnswerRequest(
            tenant=tenant(),
            question=question,
            message_id=message_id,
            history=history,
            max_tokens=max_tokens,
            temperature=temperature,
        )
    )
    return message_id


async def read_chat_body() -> Any:
    """The JSON body of a request that carries its whole history (limits.max_chat_body_bytes)."""
    limit = services().settings.limits.max_chat_body_bytes
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge()
    raw = await request.get_data()
    if len(raw) > limit:
        raise PayloadTooLarge()
    return parse_json(raw or b"null")


async def follow_answer(
    answers: AnswerManager, message_id: str, who: str, *, heartbeat: float | None = None
) -> AsyncIterator[ChatEvent | Heartbeat]:
    """An answer's events for a reader that cannot resume (these clients have no resume protocol): if the
    reader leaves before the answer's end (disconnect, cancellation), the answer is stopped at once.
    Takes the manager explicitly: a response body runs outside the app context."""
    events = answers.read(message_id, who)
    source: AsyncIterator[tuple[int, ChatEvent] | Heartbeat] = (
        with_heartbeats(events, heartbeat) if heartbeat else events
    )
    ended = False
    try:
        async for item in source:
            if isinstance(item, Heartbeat):
                yield item
                continue
            event = item[1]
            ended = is_terminal(event)
            yield event
    finally:
        if source is not events:
            await source.aclose()  # type: ignore[attr-defined]  # async generators
        await events.aclose()  # type: ignore[attr-defined]
        if not ended:
            answers.cancel_local(message_id, DISCONNECTED)


def streamed_answer(
    message_id: str, render: Callable[[ChatEvent], Iterable[bytes]], headers: Mapping[str, str]
) -> Response:
    """A streaming response of one answer for a client that cannot resume: each event rendered into
    frames by `render`, SSE keep-alive comments while quiet, and the answer stopped if the client leaves."""
    svc = services()
    who = tenant()

    async def body() -> AsyncIterator[bytes]:
        events = follow_answer(svc.answers, message_id, who, heartbeat=svc.settings.stream.heartbeat_seconds)
        try:
            async for event in events:
                if isinstance(event, Heartbeat):
                    yield HEARTBEAT
                    continue
                for frame in render(event):
                    yield frame
        finally:
            await events.aclose()  # type: ignore[attr-defined]  # stops the answer if the client went away

    response = Response(body(), status=200, headers=dict(headers))
    response.timeout = None  # an answer may stream longer than Quart's default
    return response
