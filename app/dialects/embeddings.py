"""OpenAI's embeddings API as a client dialect: its request into the canonical one, and the answer back.

``input`` is a string, a list of strings, a list of token ids or a list of such lists; each becomes
one input. ``encoding_format: base64`` answers each vector as the base64 of its float32
little-endian bytes, which the openai SDK decodes (and asks for by default).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from app.errors import ApiError
from providers.embeddings import MAX_DIMENSIONS, Embedded, EmbeddingRequest, floats, packed
from providers.request import JSON_ENCODER, TokenCount, whole_number

MAX_INPUTS = 2048  # as OpenAI: more is a 400, not a surprise at the upstream
MAX_TOKEN_ID = 2**31 - 1


class EmbeddingsBody(Struct, kw_only=True):
    model: Annotated[str, Meta(min_length=1)]
    input: str | list[Any]  # strings, token ids, or lists of token ids: checked by ``canonical``
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: TokenCount | None = None  # at most MAX_DIMENSIONS, checked by ``canonical``
    user: str | None = None


EMBEDDINGS_DECODER = msgspec.json.Decoder(EmbeddingsBody, dec_hook=whole_number)


def canonical(body: EmbeddingsBody) -> EmbeddingRequest:
    if body.dimensions is not None and body.dimensions > MAX_DIMENSIONS:
        raise ApiError(
            400,
            f"dimensions must be from 1 to {MAX_DIMENSIONS}, got {body.dimensions}; leave it out for the model's own.",
            code="invalid_value",
            param="dimensions",
        )
    items = [body.input] if isinstance(body.input, str) else body.input
    if items and all(token_id(item) for item in items):
        items = [items]  # one input as a token array
    if not 1 <= len(items) <= MAX_INPUTS:
        raise invalid_input(f"input must hold 1 to {MAX_INPUTS} items, got {len(items)}")
    if all(isinstance(item, str) for item in items):
        return EmbeddingRequest(body.model, items, body.dimensions, body.user, body.encoding_format)
    if all(isinstance(item, list) and item and all(token_id(t) for t in item) for item in items):
        tokens = [[int(t) for t in item] for item in items]
        return EmbeddingRequest(body.model, tokens, body.dimensions, body.user, body.encoding_format)
    raise invalid_input("input must be a string, a list of strings, a token array or a list of non-empty token arrays")


def token_id(value: Any) -> bool:
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return whole and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID


def invalid_input(what: str) -> ApiError:
    return ApiError(
        400,
        f"{what}. Send the texts to embed as strings (or one list of them), at most {MAX_INPUTS} per request.",
        code="invalid_value",
        param="input",
    )


def answer(body: EmbeddingsBody, result: Embedded) -> bytes:
    """The ``list`` of ``embedding`` objects, in input order, with the usage."""
    encode = packed if body.encoding_format == "base64" else floats
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": index, "embedding": encode(vector)}
        for index, vector in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSON_ENCODER.encode({"object": "list", "data": data, "model": body.model, "usage": usage})
