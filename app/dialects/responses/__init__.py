"""OpenAI's Responses API as a client dialect: the request and its translation (``request``), and the
answer (``answer``)."""

from app.dialects.responses.answer import Responses, ResponsesEncoder
from app.dialects.responses.request import RESPONSES_REQUEST_DECODER, ResponsesRequest, translate

__all__ = ["RESPONSES_REQUEST_DECODER", "Responses", "ResponsesEncoder", "ResponsesRequest", "translate"]
