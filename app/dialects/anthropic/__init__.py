"""Anthropic's Messages API as a client dialect: the request (``request``) and the answer (``answer``)."""

from app.dialects.anthropic.answer import MESSAGES, Messages, MessagesEncoder
from app.dialects.anthropic.request import MESSAGES_REQUEST_DECODER, MessagesRequest, chat_request

__all__ = ["MESSAGES", "MESSAGES_REQUEST_DECODER", "Messages", "MessagesEncoder", "MessagesRequest", "chat_request"]
