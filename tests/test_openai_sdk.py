"""The official openai SDK, pointed at a real gateway on 127.0.0.1, as our users run it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.conftest import LiveServer


@pytest.fixture
async def sdk(live_server: LiveServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{live_server.url}/v1", api_key="not-needed", max_retries=0) as client:
        yield client


async def test_create(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello there"}])
    assert completion.choices[0].message.content == "hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


async def test_stream_with_usage(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "hello streaming world"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello streaming world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


async def test_max_tokens_ends_with_length(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="synthetic:ttft_ms=0,delay_ms=0,tokens=50", messages=[{"role": "user", "content": "x"}], max_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


async def test_models_list(sdk: openai.AsyncOpenAI) -> None:
    assert {model.id async for model in sdk.models.list()} >= {"echo", "synthetic"}


async def test_unknown_model_is_not_found_error(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert "GET /v1/models" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 3}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature"),
    ],
)
async def test_bad_body_is_bad_request_error(sdk: openai.AsyncOpenAI, kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.chat.completions.create(model="echo", **kwargs)  # type: ignore[call-overload]
    assert info.value.param == param
    assert info.value.request_id is not None
