"""The handler for each operationId in openapi.yaml."""

from __future__ import annotations

from app.chat import create_chat_completion
from app.conversations.api import (
    create_conversation,
    delete_conversation,
    get_conversation,
    list_conversations,
)
from app.info import get_health, get_openapi_spec, list_models
from app.mcp_tools import list_mcp_tools
from app.metrics import get_metrics
from app.native_chat import create_native_chat
from app.openapi import Handler
from app.page import get_chat_page, get_static_asset
from app.websocket import chat_websocket

HANDLERS: dict[str, Handler] = {
    "createChatCompletion": create_chat_completion,
    "createNativeChat": create_native_chat,
    "chatWebSocket": chat_websocket,
    "createConversation": create_conversation,
    "listConversations": list_conversations,
    "getConversation": get_conversation,
    "deleteConversation": delete_conversation,
    "listMcpTools": list_mcp_tools,
    "getChatPage": get_chat_page,
    "getStaticAsset": get_static_asset,
    "listModels": list_models,
    "getHealth": get_health,
    "getMetrics": get_metrics,
    "getOpenApiSpec": get_openapi_spec,
}
