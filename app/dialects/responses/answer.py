"""OpenAI's Responses answer: canonical events as its event stream, or as one ``response`` object.

``response.created`` and ``response.in_progress``; per output item ``response.output_item.added``,
its own events (a message's ``content_part.added``, ``output_text.delta``/``.done`` and
``content_part.done``; a reasoning item's ``reasoning_summary_part.added``,
``reasoning_summary_text.delta``/``.done`` and ``reasoning_summary_part.done``; a function call's
``function_call_arguments.delta``/``.done``) and ``response.output_item.done``; then
``response.completed``, or ``response.incomplete`` (max tokens, content filter), with the usage.
Every event carries its ``sequence_number``. A failure after the stream began is an ``error`` event
and ``response.failed``, never a completion.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from starlette.responses import Response

from app.dialects.answer import AnswerBuilder, Ending, EndingView
from app.dialects.base import KEEPALIVE, Summary
from app.dialects.responses.request import FREEFORM_PARAMETERS
from app.errors import ApiError, error_response
from providers.base import Event, Finish, FinishReason, ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart, Usage
from providers.request import JSON_ENCODER, ChatRequest

ENCODER = JSON_ENCODER  # the request's own whole-number types go back out as plain integers
INCOMPLETE: dict[FinishReason, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage_out(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def custom_input(arguments: str) -> str:
    """A freeform tool's input: the ``input`` string the function form of it was called with."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) else arguments


def freeform_tools(chat: ChatRequest) -> frozenset[str]:
    return frozenset(t.function.name for t in chat.function_tools if t.function.parameters == FREEFORM_PARAMETERS)


class OutputItem:
    """One output item as it streams: its kind, ids, position, and what it holds so far."""

    def __init__(self, kind: str, index: int, call_id: str = "", name: str = ""):
        prefixes = {"message": "msg", "reasoning": "rs", "function_call": "fc", "custom_tool_call": "ctc"}
        self.kind, self.index, self.id = kind, index, item_id(prefixes[kind])
        self.call_id, self.name = call_id, name
        self.parts: list[str] = []

    def done(self) -> dict[str, Any]:
        """The item as it is when complete, for ``output_item.done`` and the response's ``output``."""
        text = "".join(self.parts)
        match self.kind:
            case "message":
                part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
                return {"id": self.id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
            case "reasoning":
                return {"id": self.id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}
            case "custom_tool_call":
                return {**self.call(), "input": custom_input(text)}
        return {**self.call(), "arguments": text}

    def call(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.kind, "status": "completed", "call_id": self.call_id, "name": self.name}


class ResponsesEncoder(EndingView):
    """One answer as the Responses event stream; its last ``response`` object goes to ``dialect.final``."""

    def __init__(self, response_id: str, chat: ChatRequest, dialect: Responses):
        self.response_id, self.chat, self.dialect = response_id, chat, dialect
        self.created_at = dialect.created_at
        self.freeform = freeform_tools(chat)
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: OutputItem | None = None
        self.ending = Ending()

    def frame(self, name: str, payload: dict[str, Any]) -> bytes:
        self.sequence += 1
        body = ENCODER.encode({"type": name, **payload, "sequence_number": self.sequence - 1})
        return b"event: %s\ndata: %s\n\n" % (name.encode(), body)

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("model", self.dialect.model)
        return response_object(self.response_id, self.created_at, self.chat, status, self.output, **fields)

    def serve(self, model: str) -> None:
        self.dialect.model = model

    def opening(self) -> bytes:
        created = self.response("in_progress", usage=None)
        return self.frame("response.created", {"response": created}) + self.frame(
            "response.in_progress", {"response": created}
        )

    def encode(self, event: Event) -> bytes | None:
        match event:
            case TextDelta(text=text):
                return self.delta("message", text)
            case ReasoningDelta(text=text):
                return self.delta("reasoning", text)
            case ToolCallStart(id=call_id, name=name):
                kind = "custom_tool_call" if name in self.freeform else "function_call"
                return self.close() + self.start(OutputItem(kind, len(self.output), call_id, name))
            case ToolCallDelta(arguments=arguments) if self.open is not None and self.open.kind.endswith("call"):
                self.open.parts.append(arguments)
                if self.open.kind == "custom_tool_call" or not arguments:
                    return None  # a freeform input is sent whole once the call is complete
                where = {"item_id": self.open.id, "output_index": self.open.index}
                return self.frame("response.function_call_arguments.delta", {**where, "delta": arguments})
            case Finish():
                self.ending.take(event)
                return self.close()
        self.ending.take(event)
        return None

    def delta(self, kind: str, text: str) -> bytes:
        start = b""
        if self.open is None or self.open.kind != kind:
            start = self.close() + self.start(OutputItem(kind, len(self.output)))
        item = self.open
        assert item is not None
        item.parts.append(text)
        where = {"item_id": item.id, "output_index": item.index}
        if kind == "message":
            return start + self.frame(
                "response.output_text.delta", {**where, "content_index": 0, "delta": text, "logprobs": []}
            )
        return start + self.frame("response.reasoning_summary_text.delta", {**where, "summary_index": 0, "delta": text})

    def start(self, item: OutputItem) -> bytes:
        self.open = item
        opened: dict[str, Any] = {**item.done(), "status": "in_progress"}
        if item.kind == "message":
            opened["content"] = []
        elif item.kind == "reasoning":
            opened["summary"] = []
        frames = self.frame("response.output_item.added", {"output_index": item.index, "item": opened})
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "message":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            frames += self.frame("response.content_part.added", {**where, "content_index": 0, "part": part})
        elif item.kind == "reasoning":
            part = {"type": "summary_text", "text": ""}
            frames += self.frame("response.reasoning_summary_part.added", {**where, "summary_index": 0, "part": part})
        return frames

    def close(self) -> bytes:
        item, self.open = self.open, None
        if item is None:
            return b""
        done, text = item.done(), "".join(item.parts)
        where = {"item_id": item.id, "output_index": item.index}
        frames = b""
        if item.kind == "message":
            part = done["content"][0]
            frames += self.frame(
                "response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []}
            )
            frames += self.frame("response.content_part.done", {**where, "content_index": 0, "part": part})
        elif item.kind == "reasoning":
            frames += self.frame("response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": text})
            part = {"type": "summary_text", "text": text}
            frames += self.frame("response.reasoning_summary_part.done", {**where, "summary_index": 0, "part": part})
        elif item.kind == "function_call":
            frames += self.frame("response.function_call_arguments.done", {**where, "arguments": text})
        else:
            custom = done["input"]
            frames += self.frame("response.custom_tool_call_input.delta", {**where, "delta": custom})
            frames += self.frame("response.custom_tool_call_input.done", {**where, "input": custom})
        self.output.append(done)
        return frames + self.frame("response.output_item.done", {"output_index": item.index, "item": done})

    def end(self, summary: Summary) -> list[bytes]:
        finish = self.ending.finish
        assert finish is not None
        status, name, details = ending_status(finish)
        response = self.response(status, usage=usage_out(self.ending.usage), incomplete_details=details)
        self.dialect.final = response
        return [self.frame(name, {"response": response})]

    def error(self, error: ApiError, request_id: str) -> bytes:
        detail = {"code": error.code, "message": error.message}
        failed = self.response("failed", error=detail, usage=usage_out(self.ending.usage))
        self.dialect.final = failed
        return self.frame("error", {**detail, "param": error.param}) + self.frame(
            "response.failed", {"response": failed}
        )


def ending_status(finish: FinishReason) -> tuple[str, str, dict[str, str] | None]:
    """The response's status, its terminal event, and why it is incomplete (max tokens, content filter)."""
    if finish in INCOMPLETE:
        return "incomplete", "response.incomplete", {"reason": INCOMPLETE[finish]}
    return "completed", "response.completed", None


def response_object(
    response_id: str, created_at: int, chat: ChatRequest, status: str, output: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    """The ``response`` object: what was asked (model, options) and, as it stands, what was answered."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": chat.model,
        "output": output,
        "parallel_tool_calls": chat.parallel_tool_calls is not False,
        "temperature": chat.temperature,
        "top_p": chat.top_p,
        "max_output_tokens": chat.token_limit,
        "tool_choice": "auto",
        "tools": [],
        "metadata": chat.metadata or {},
        "usage": None,
        **fields,
    }


def whole_output(answer: AnswerBuilder, freeform: frozenset[str]) -> list[dict[str, Any]]:
    items: list[OutputItem] = []
    if answer.reasoning:
        items.append(OutputItem("reasoning", len(items)))
        items[-1].parts = answer.reasoning
    if answer.text or not answer.tool_calls:
        items.append(OutputItem("message", len(items)))
        items[-1].parts = answer.text
    for call in answer.tool_calls.finished():
        kind = "custom_tool_call" if call.name in freeform else "function_call"
        items.append(OutputItem(kind, len(items), call.id, call.name))
        items[-1].parts = [call.arguments]
    return [item.done() for item in items]


class Responses:
    """The dialect of ``POST /v1/responses``, one per request: the whole answer echoes what was asked.
    Errors before the stream are OpenAI's envelope."""

    id_prefix = "resp_"
    keepalive = KEEPALIVE

    def __init__(self, chat: ChatRequest):
        self.chat = chat
        self.created_at = int(time.time())
        self.model = chat.model  # the model that answers, once one does
        self.final: dict[str, Any] | None = None  # the last response object the client was sent

    def stream(self, chat: ChatRequest, answer_id: str) -> ResponsesEncoder:
        return ResponsesEncoder(answer_id, chat, self)

    def whole(self, answer: AnswerBuilder, summary: Summary) -> bytes:
        assert answer.finish is not None
        status, _, details = ending_status(answer.finish)
        output = whole_output(answer, freeform_tools(self.chat))
        body = response_object(summary.message_id, self.created_at, self.chat, status, output, model=summary.model)
        self.final = {**body, "usage": usage_out(answer.usage), "incomplete_details": details}
        return ENCODER.encode(self.final)

    def kept(self, answer: AnswerBuilder, answer_id: str, outcome: str, error: str | None) -> bytes:
        """The response object a stored response keeps: as the client was last sent it, else (the
        client left) as far as the answer came."""
        if self.final is not None:
            return ENCODER.encode(self.final)
        output = whole_output(answer, freeform_tools(self.chat))
        status = "cancelled" if outcome == "cancelled" else "failed"
        failure = {"code": error, "message": "The answer failed before it was complete."} if error else None
        body = response_object(answer_id, self.created_at, self.chat, status, output, error=failure, model=self.model)
        return ENCODER.encode({**body, "usage": usage_out(answer.usage)})

    def error_response(self, error: ApiError, request_id: str) -> Response:
        return error_response(error, request_id)
