from __future__ import annotations

import asyncio

import pytest

from providers.base import Deployment, Event, Finish, InvalidRequestError, Start, TextDelta, Usage
from providers.request import ChatRequest, SystemMessage, TextPart, UserMessage
from providers.simulated import SimulatedProvider, parse_model


def chat(text: str | list[TextPart] = "hello there", **options: object) -> ChatRequest:
    return ChatRequest(model="echo", messages=[UserMessage(content=text)], **options)  # type: ignore[arg-type]


async def run(request: ChatRequest, model: str = "echo") -> list[Event]:
    return [event async for event in SimulatedProvider().stream(request, Deployment("simulated", model))]


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


async def test_echo_streams_one_word_per_chunk_after_start() -> None:
    events = await run(chat("hello there"))
    assert events[0] == Start()
    assert texts(events) == ["hello", " there"]
    assert events[-2:] == [Usage(prompt_tokens=2, completion_tokens=2), Finish("stop")]


@pytest.mark.parametrize("text", ["hello there", "  lead\n\ntwo  spaces ", "известни 🙂 text", "", "one"])
async def test_echo_chunks_join_back_to_the_text_less_trailing_space(text: str) -> None:
    assert "".join(texts(await run(chat(text)))) == text.rstrip()


async def test_echo_answers_the_last_user_message_and_reads_text_parts() -> None:
    request = ChatRequest(
        model="echo",
        messages=[
            SystemMessage(content="be terse"),
            UserMessage(content="first"),
            UserMessage(content=[TextPart("second "), TextPart("part")]),
        ],
    )
    assert "".join(texts(await run(request))) == "second part"


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
async def test_token_limit_stops_with_length(limit_field: str) -> None:
    events = await run(chat("a b c d e", **{limit_field: 2}))
    assert texts(events) == ["a", " b"]
    assert events[-2:] == [Usage(prompt_tokens=5, completion_tokens=2), Finish("length")]


async def test_limit_equal_to_the_answer_still_stops_normally() -> None:
    events = await run(chat("a b", max_tokens=2))
    assert events[-1] == Finish("stop")


async def test_synthetic_streams_the_requested_number_of_tokens() -> None:
    events = await run(chat(), "synthetic:ttft_ms=0,delay_ms=0,tokens=7")
    words = texts(events)
    assert len(words) == 7
    assert not words[0].startswith(" ")
    assert events[-2] == Usage(prompt_tokens=2, completion_tokens=7)


async def test_synthetic_waits_ttft_once_then_delay_between_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    await run(chat(), "synthetic:ttft_ms=50,delay_ms=5,tokens=4")
    assert sleeps == [0.05, 0.005, 0.005, 0.005]


def test_defaults_give_synthetic_a_visible_shape() -> None:
    base, options = parse_model("synthetic")
    assert base == "synthetic"
    assert min(options.ttft_ms, options.delay_ms, options.tokens) > 0


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ("synthetic:speed=3", "Unknown simulated-model option 'speed'"),
        ("synthetic:tokens=many", "must be a whole number"),
        ("synthetic:tokens=-1", "must be a whole number"),
        ("synthetic:ttft_ms=999999999", "from 0 to 600000"),
        ("nope", "has no model 'nope'"),
    ],
)
async def test_bad_options_are_a_400_before_start(model: str, fragment: str) -> None:
    stream = SimulatedProvider().stream(chat(), Deployment("simulated", model))
    with pytest.raises(InvalidRequestError, match=fragment) as info:
        await anext(stream)
    assert info.value.param == "model"


@pytest.mark.parametrize("value", ["²", "٣", "1e3", "-1"])
def test_options_take_ascii_whole_numbers_only(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="whole number"):
        parse_model(f"synthetic:tokens={value}")  # "²" passed str.isdigit and broke int(): a 500
