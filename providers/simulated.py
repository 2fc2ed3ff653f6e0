"""The built-in simulated provider: always on, no key, no network.

``echo`` streams the last user message back one word per chunk. ``synthetic`` streams filler text
with a chosen shape, for demos and load tests. Either takes options after a colon, in the model
name itself, so a load test needs no config file:

    synthetic:ttft_ms=50,delay_ms=5,tokens=50
    echo:delay_ms=20

``ttft_ms`` is the wait before the first token, ``delay_ms`` the wait between tokens and ``tokens``
the answer's length (``synthetic`` only). Both report usage and honour ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Iterable, Iterator
from itertools import cycle, islice

import msgspec

from providers.base import Deployment, Event, Finish, InvalidRequestError, Start, TextDelta, Usage, digits_value
from providers.request import ChatRequest, UserMessage, message_text

WORD = re.compile(r"\s*\S+")
FILLER = (
    "The quick brown fox jumps over the lazy dog while the gateway relays every token as it "
    "arrives, adding nothing a person could notice to the time the model itself takes."
)
FILLER_WORDS = tuple(WORD.findall(" " + FILLER))
OPTION_LIMITS = {"ttft_ms": 600_000, "delay_ms": 60_000, "tokens": 100_000}


class SimOptions(msgspec.Struct, frozen=True):
    ttft_ms: int = 0
    delay_ms: int = 0
    tokens: int = 0


DEFAULTS = {
    "echo": SimOptions(),
    "synthetic": SimOptions(ttft_ms=200, delay_ms=20, tokens=60),
}


class SimulatedProvider:
    """Answers from inside the process, shaped like a real upstream: Start, deltas, usage, finish."""

    name = "simulated"
    models = tuple(DEFAULTS)

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        base, options = parse_model(deployment.model)
        words: Iterable[str] = synthetic_words(options.tokens)
        met = None
        if base == "echo":
            words, met = until_stop(echo_words(request), request.stop)
        limit = request.token_limit
        yield Start()
        if options.ttft_ms:
            await asyncio.sleep(options.ttft_ms / 1000)
        sent = 0
        for word in words:
            if limit is not None and sent == limit:
                yield usage_for(request, sent)
                yield Finish("length")
                return
            if sent and options.delay_ms:
                await asyncio.sleep(options.delay_ms / 1000)
            yield TextDelta(word)
            sent += 1
        yield usage_for(request, sent)
        yield Finish("stop", met)

    async def aclose(self) -> None:
        return None


def parse_model(model: str) -> tuple[str, SimOptions]:
    """Split ``synthetic:ttft_ms=50,tokens=10`` into the base model and its options."""
    base, _, raw = model.partition(":")
    if base not in DEFAULTS:
        known = ", ".join(DEFAULTS)
        raise InvalidRequestError(f"The simulated provider has no model {base[:40]!r}; it has {known}.", param="model")
    values = msgspec.structs.asdict(DEFAULTS[base])
    for item in filter(None, raw.split(",")):
        key, value = parse_option(item)
        values[key] = value
    return base, SimOptions(**values)


def parse_option(item: str) -> tuple[str, int]:
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in OPTION_LIMITS:
        known = ", ".join(OPTION_LIMITS)
        raise InvalidRequestError(
            f"Unknown simulated-model option {key[:40]!r} in the model name; use {known}, "
            "as in 'synthetic:ttft_ms=50,delay_ms=5,tokens=50'.",
            param="model",
        )
    number = digits_value(value.strip())
    if number is None or number > OPTION_LIMITS[key]:
        raise InvalidRequestError(
            f"Simulated-model option {key} must be a whole number from 0 to {OPTION_LIMITS[key]}, "
            f"got {value.strip()[:40]!r}.",
            param="model",
        )
    return key, number


def echo_words(request: ChatRequest) -> list[str]:
    """The last user message, split so that joining the chunks gives back its exact text."""
    for message in reversed(request.messages):
        if isinstance(message, UserMessage):
            return WORD.findall(message_text(message.content))
    return []


def until_stop(words: list[str], stop: str | list[str] | None) -> tuple[list[str], str | None]:
    """The echo cut before the first stop sequence in it, as a model stops there, and the sequence met."""
    sequences = [stop] if isinstance(stop, str) else stop or []
    text = "".join(words)
    found = [(text.find(s), s) for s in sequences if s and s in text]
    if not found:
        return words, None
    at, sequence = min(found)
    return WORD.findall(text[:at]), sequence


def synthetic_words(count: int) -> Iterator[str]:
    words = islice(cycle(FILLER_WORDS), count)
    first = next(words, None)
    if first is not None:
        yield first.lstrip()
        yield from words


def usage_for(request: ChatRequest, completion_tokens: int) -> Usage:
    """A word count stands in for tokens: the simulated models have no tokenizer."""
    prompt = sum(len(WORD.findall(message_text(m.content))) for m in request.messages)
    return Usage(prompt_tokens=prompt, completion_tokens=completion_tokens)
