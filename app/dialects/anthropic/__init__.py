"""Anthropic's Messages API as a client dialect: the request (``request``), its translation into the
canonical request (``translate``) and the answer (``answer``)."""

from app.dialects.anthropic.answer import MESSAGES, Messages, MessagesEncoder
from app.dialects.anthropic.request import (
    COUNT_TOKENS_DECODER,
    MESSAGES_REQUEST_DECODER,
    CountTokensRequest,
    MessagesRequest,
)
from app.dialects.anthropic.translate import chat_request, translate

__all__ = [
    "COUNT_TOKENS_DECODER",
    "MESSAGES",
    "MESSAGES_REQUEST_DECODER",
    "CountTokensRequest",
    "Messages",
    "MessagesEncoder",
    "MessagesRequest",
    "chat_request",
    "translate",
]
