"""Embeddings, the upstream side: the canonical request and answer, what a provider that embeds
implements, and the built-in hashing model that needs no key.

An answer's vectors are floats, or (from an upstream asked for base64, which saves parsing a
thousand floats per input) the base64 of their little-endian float32 bytes; the client's dialect
turns either into what the client asked for.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re
import struct
from collections.abc import AsyncGenerator
from typing import Literal, Protocol, runtime_checkable

import msgspec

from providers.base import Deployment, Event, InvalidRequestError, UpstreamProtocolError
from providers.request import ChatRequest

Vector = list[float] | str  # floats, or base64 of float32 little-endian
WORD = re.compile(r"\w+", re.UNICODE)
HASHING_MODEL = "hash-embedding"
HASHING_DIMENSIONS = 256  # unless the request asks for others
MAX_DIMENSIONS = 4096


class EmbeddingRequest(msgspec.Struct, frozen=True):
    model: str
    input: list[str] | list[list[int]]  # texts, or token ids (only OpenAI-compatible upstreams take them)
    dimensions: int | None = None
    user: str | None = None
    encoding_format: Literal["float", "base64"] = "float"  # what the client wants; an upstream may send either

    @property
    def tokens(self) -> bool:
        return bool(self.input) and not isinstance(self.input[0], str)


class Embedded(msgspec.Struct):
    """An upstream's answer: one vector per input, in order, and the input tokens it counted."""

    vectors: list[Vector]
    prompt_tokens: int


@runtime_checkable
class Embedder(Protocol):
    """A provider with an embeddings API."""

    name: str

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embedded: ...


def floats(vector: Vector) -> list[float]:
    if isinstance(vector, str):
        raw = base64.b64decode(vector)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return vector


def packed(vector: Vector) -> str:
    """The vector as base64 of float32 little-endian, as OpenAI sends it and its SDK decodes it."""
    if isinstance(vector, str):
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedded(vectors: list[Vector], request: EmbeddingRequest, prompt_tokens: int, provider: str) -> Embedded:
    """The answer, once it holds one vector per input: an upstream that drops one must not shift the rest."""
    if len(vectors) != len(request.input):
        raise UpstreamProtocolError(
            f"{provider} answered {len(vectors)} embeddings for {len(request.input)} inputs, "
            "which is not part of its documented API."
        )
    return Embedded(vectors, prompt_tokens)


def estimate_tokens(request: EmbeddingRequest) -> int:
    """For upstreams that count no tokens (Gemini): about four characters a token, as elsewhere."""
    if request.tokens:
        return sum(len(ids) for ids in request.input)
    return sum(max(1, math.ceil(len(text) / 4)) for text in request.input if isinstance(text, str))


def texts_only(request: EmbeddingRequest, provider: str) -> list[str]:
    if request.tokens:
        raise InvalidRequestError(
            f"{provider} embeds text, not token ids. Send the input as strings, or use an OpenAI model "
            "for token arrays.",
            param="input",
        )
    return [text for text in request.input if isinstance(text, str)]


class HashingEmbedder:
    """``hash-embedding``: a deterministic feature-hashing embedding, in the process, with no key.

    Each lowercased word (and each adjacent pair of words) adds a signed one to a dimension picked by
    its BLAKE2 hash; the vector is then scaled to length 1. Texts that share words get similar
    vectors, and the same text always the same vector, on every machine. It is **not semantic**:
    synonyms are unrelated, and it exists for tests, demos and offline development.
    """

    name = "hashing"
    models: tuple[str, ...] = (HASHING_MODEL,)

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embedded:
        size = request.dimensions or HASHING_DIMENSIONS
        if not 1 <= size <= MAX_DIMENSIONS:
            raise InvalidRequestError(
                f"dimensions must be from 1 to {MAX_DIMENSIONS} for {HASHING_MODEL}, got {size}.", param="dimensions"
            )
        items = (
            [[str(t) for t in ids] for ids in request.input]
            if request.tokens
            else [WORD.findall(text.lower()) for text in request.input if isinstance(text, str)]
        )
        return Embedded([hashed(words, size) for words in items], sum(len(words) for words in items))

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        raise InvalidRequestError(
            f"{HASHING_MODEL} is an embedding model: send it to POST /v1/embeddings. To chat, use echo.", param="model"
        )
        yield  # an async generator, as every provider's stream is  # pragma: no cover

    async def aclose(self) -> None:
        return None


def hashed(words: list[str], size: int) -> list[float]:
    vector = [0.0] * size
    for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
        digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        vector[digest % size] += 1.0 if digest >> 63 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector
