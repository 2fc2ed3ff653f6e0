"""OpenAI's legacy Completions API (``POST /v1/completions``), answered by any chat model.

The prompt becomes the one user message of a chat request, so a chat model answers it (there are
few text-completion models left; clients such as LlamaIndex's ``OpenAILike`` still call this route
by default). The answer is ``text_completion`` chunks, or one ``text_completion`` body: the text
only, as the API has no place for reasoning or tool calls. What it cannot do it refuses with a
400 that says so: ``suffix`` (insertion), ``echo``, ``logprobs``, token-array prompts, ``n`` > 1.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct
from starlette.responses import Response

from app.dialects.answer import AnswerBuilder, Ending, EndingView
from app.dialects.base import KEEPALIVE, Summary
from app.errors import ApiError, error_response
from providers.base import Event, Finish, TextDelta, Usage
from providers.request import ChatRequest, Int64, StopSequences, StreamOptions, TokenCount, UserMessage, whole_number

ENCODER = msgspec.json.Encoder()
DONE = b"data: [DONE]\n\n"


class CompletionRequest(Struct, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    prompt: str | list[Any] = ""
    max_tokens: TokenCount | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop: StopSequences | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: Int64 | None = None
    seed: Int64 | None = None
    user: str | None = None
    suffix: str | None = None
    echo: bool | None = None
    logprobs: Int64 | None = None


COMPLETION_REQUEST_DECODER = msgspec.json.Decoder(CompletionRequest, dec_hook=whole_number)


def refused(param: str, why: str) -> ApiError:
    return ApiError(400, why, code="unsupported_parameter", param=param)


def chat_request(request: CompletionRequest) -> ChatRequest:
    """The prompt as one user message; what a chat model cannot do is a 400 that says so."""
    if request.suffix:
        raise refused(
            "suffix",
            "suffix (text insertion) needs a text-completion model, which the gateway does not "
            "serve; put the text around the gap into the prompt instead.",
        )
    if request.echo:
        raise refused("echo", "echo is not supported: the answer is the model's text only. Leave echo out.")
    if request.logprobs:
        raise refused("logprobs", "logprobs are not supported on this route; use /v1/chat/completions.")
    prompt = request.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise refused(
                "prompt",
                "prompt must be a string or a list of one string: token arrays and several prompts are not "
                "supported. Send one prompt per request.",
            )
        prompt = prompt[0]
    return ChatRequest(
        model=request.model,
        messages=[UserMessage(prompt)],
        stream=request.stream,
        stream_options=request.stream_options,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        n=request.n,
        seed=request.seed,
        user=request.user,
    )


def usage_out(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


class TextCompletionEncoder(EndingView):
    """One answer as ``text_completion`` chunks: the text, then the finish, the usage if asked, ``[DONE]``."""

    def __init__(self, completion_id: str, model: str, include_usage: bool):
        self.head = {"id": completion_id, "object": "text_completion", "created": int(time.time()), "model": model}
        self.include_usage = include_usage
        self.ending = Ending()

    def chunk(self, text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return b"data: " + ENCODER.encode({**self.head, "choices": [choice]}) + b"\n\n"

    def serve(self, model: str) -> None:
        self.head["model"] = model

    def opening(self) -> bytes | None:
        return None

    def encode(self, event: Event) -> bytes | None:
        if type(event) is TextDelta:
            return self.chunk(event.text, None)
        self.ending.take(event)
        return self.chunk("", event.reason) if isinstance(event, Finish) else None

    def end(self, summary: Summary) -> list[bytes]:
        if not self.include_usage:
            return [DONE]
        usage = b"data: " + ENCODER.encode({**self.head, "choices": [], "usage": usage_out(self.usage)}) + b"\n\n"
        return [usage, DONE]

    def error(self, error: ApiError, request_id: str) -> bytes:
        return b"data: " + error.envelope(request_id) + b"\n\n"


class TextCompletions:
    """The dialect of ``POST /v1/completions``."""

    id_prefix = "cmpl-"
    keepalive = KEEPALIVE

    def stream(self, chat: ChatRequest, answer_id: str) -> TextCompletionEncoder:
        return TextCompletionEncoder(answer_id, chat.model, chat.include_usage)

    def whole(self, answer: AnswerBuilder, summary: Summary) -> bytes:
        choice = {"text": "".join(answer.text), "index": 0, "logprobs": None, "finish_reason": answer.finish}
        body = {
            "id": summary.message_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": summary.model,
        }
        return ENCODER.encode({**body, "choices": [choice], "usage": usage_out(answer.usage)})

    def error_response(self, error: ApiError, request_id: str) -> Response:
        return error_response(error, request_id)


TEXT_COMPLETIONS = TextCompletions()
