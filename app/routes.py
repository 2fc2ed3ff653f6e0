"""The handler for each operationId in openapi.yaml."""

from __future__ import annotations

from app.chat import create_chat_completion
from app.info import get_health, get_openapi_spec, list_models
from app.openapi import Handler

HANDLERS: dict[str, Handler] = {
    "createChatCompletion": create_chat_completion,
    "listModels": list_models,
    "getHealth": get_health,
    "getOpenApiSpec": get_openapi_spec,
}
