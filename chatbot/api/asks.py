"""Starting an answer from a transport: validate the message, resolve the conversation, start the task."""

from __future__ import annotations

from chatbot.api.context import services, tenant
from chatbot.api.wire import check_message
from chatbot.errors import UnknownConversation
from chatbot.observability import message_context
from chatbot.rag.answers import new_message_id
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
    with message_context(message_id):  # the answer task copies the context: its log lines carry message_id
        req = AnswerRequest(tenant=who, question=question, message_id=message_id, conversation_id=conversation_id)
        svc.answers.start(req)
    return message_id, conversation_id
