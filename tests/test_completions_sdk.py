"""``POST /v1/completions`` through the official openai SDK: the built-in models, a chat upstream, refusals."""

from __future__ import annotations

import openai
import orjson
import pytest
import respx

from tests.providers.streams import fixture, streamed
from tests.test_vendors_sdk import OPENAI


async def test_a_whole_completion(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.completions.create(model="echo", prompt="hello there", max_tokens=10)
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


async def test_a_streamed_completion_with_usage(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.completions.create(
        model="echo", prompt=["one two three"], max_tokens=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


@respx.mock
async def test_the_prompt_reaches_a_chat_upstream_as_one_user_message(sdk: openai.AsyncOpenAI) -> None:
    route = respx.post(f"{OPENAI}/chat/completions").mock(side_effect=streamed(fixture("openai_text.sse"), 7))
    completion = await sdk.completions.create(model="openai/gpt-4o", prompt="Say hi", stop=["\n"], temperature=0.2)
    sent = orjson.loads(route.calls[0].request.content)
    assert sent["messages"] == [{"role": "user", "content": "Say hi"}]
    assert (sent["stop"], sent["temperature"]) == (["\n"], 0.2)
    assert completion.choices[0].text


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"suffix": "end"}, "suffix"),
        ({"echo": True}, "echo"),
        ({"logprobs": 2}, "logprobs"),
        ({"prompt": ["a", "b"]}, "one prompt per request"),
        ({"prompt": [1, 2, 3]}, "token arrays"),
        ({"n": 2}, "n=2"),
    ],
)
async def test_what_a_chat_model_cannot_do_is_a_400_that_says_so(
    sdk: openai.AsyncOpenAI, options: dict[str, object], says: str
) -> None:
    body = {"prompt": "hi", **options}
    with pytest.raises(openai.BadRequestError, match=says):
        await sdk.completions.create(model="echo", **body)  # type: ignore[call-overload]


async def test_the_openai_sdk_reads_one_model(sdk: openai.AsyncOpenAI) -> None:
    model = await sdk.models.retrieve("echo")
    assert (model.id, model.object) == ("echo", "model")
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("no-such-model")
