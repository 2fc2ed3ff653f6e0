"""``POST /v1/embeddings`` through the official openai SDK: the built-in hashing model with no key,
every vendor faked at the HTTP layer with bodies split at awkward places, float and base64, and the
chat rules (retries, fallbacks, timeouts, keys, rate limits, access log, metrics)."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from typing import Any

import httpx
import openai
import orjson
import pytest
import respx

from app.config import Backoff, GatewayConfig, HttpSettings, Reliability
from app.http.auth import AuthSettings, GatewayKey
from app.limits.rules import RateLimits
from app.main import create_app
from providers.base import Deployment, Timeouts
from providers.embeddings import HASHING_DIMENSIONS, HASHING_MODEL
from providers.router import ModelConfig
from tests.app.http.test_access import access_lines
from tests.app.ops.test_metrics import sample
from tests.providers.streams import streamed
from tests.test_vendors_sdk import CONFIG, OPENAI, sdk_http

VECTORS = [[0.25, -0.5, 1.0], [0.0, 0.125, -2.0]]


def packed(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def openai_answer(base64_vectors: bool = False, count: int = 2) -> bytes:
    data = [
        {"object": "embedding", "index": i, "embedding": packed(v) if base64_vectors else v}
        for i, v in reversed(list(enumerate(VECTORS[:count])))  # out of order: the index decides
    ]
    usage = {"prompt_tokens": 5, "total_tokens": 5}
    return orjson.dumps({"object": "list", "data": data, "model": "text-embedding-3-small", "usage": usage})


def vectors(answer: Any) -> list[list[float]]:
    return [item.embedding for item in answer.data]


async def test_the_built_in_model_embeds_with_no_key_and_the_same_text_always_gets_the_same_vector() -> None:
    http = sdk_http(create_app())
    async with http, openai.AsyncOpenAI(base_url="http://gateway.test/v1", api_key="none", http_client=http) as client:
        answer = await client.embeddings.create(model=HASHING_MODEL, input=["a", "b"])  # the SDK asks for base64
        floats = await client.embeddings.create(model=HASHING_MODEL, input=["a", "b"], encoding_format="float")
        again = await client.embeddings.create(model=HASHING_MODEL, input="the cat sat on the mat")
        near = await client.embeddings.create(model=HASHING_MODEL, input="the cat sat on a mat")
        far = await client.embeddings.create(model=HASHING_MODEL, input="quarterly revenue grew")
        same = await client.embeddings.create(model=HASHING_MODEL, input="The cat sat on the mat!")
        small = await client.embeddings.create(model=HASHING_MODEL, input="a b c", dimensions=8)
    a, b = vectors(answer)
    assert len(a) == len(b) == HASHING_DIMENSIONS
    assert a != b
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-5)
    for decoded, exact in zip(vectors(answer), vectors(floats), strict=True):  # base64 decoded by the SDK itself
        assert decoded == pytest.approx(exact, abs=1e-6)
    assert (answer.usage.prompt_tokens, answer.model) == (2, HASHING_MODEL)

    def cosine(x: Any, y: Any) -> float:
        return float(sum(p * q for p, q in zip(x.data[0].embedding, y.data[0].embedding, strict=True)))

    assert cosine(again, near) > 0.5 > cosine(again, far)
    assert vectors(same) == vectors(again)  # case and punctuation are not words
    assert len(small.data[0].embedding) == 8


@pytest.mark.parametrize("size", [1, 5, 64])
@pytest.mark.parametrize("encoding_format", ["float", "base64"])
@respx.mock
async def test_openai_gets_the_request_and_its_vectors_come_back_in_input_order(
    sdk: openai.AsyncOpenAI, size: int, encoding_format: str
) -> None:
    upstream_base64 = encoding_format == "base64"
    route = respx.post(f"{OPENAI}/embeddings").mock(
        side_effect=streamed(openai_answer(upstream_base64), size, "application/json")
    )
    answer = await sdk.embeddings.create(
        model="openai/text-embedding-3-small",
        input=["first", "second"],
        dimensions=3,
        user="u-1",
        encoding_format=encoding_format,  # type: ignore[arg-type]
    )
    if upstream_base64:
        got = [list(struct.unpack("<3f", base64.b64decode(str(e)))) for e in vectors(answer)]
    else:
        got = vectors(answer)
    assert got == VECTORS
    assert answer.usage.prompt_tokens == 5
    assert answer.model == "openai/text-embedding-3-small"
    sent = orjson.loads(route.calls[0].request.content)
    assert sent == {
        "model": "text-embedding-3-small",
        "input": ["first", "second"],
        "encoding_format": encoding_format,
        "dimensions": 3,
        "user": "u-1",
    }
    assert route.calls[0].request.headers["authorization"] == "Bearer sk-openai-secret"


@respx.mock
async def test_the_sdks_default_base64_is_made_by_the_gateway_when_the_upstream_sends_floats(
    sdk: openai.AsyncOpenAI,
) -> None:
    respx.post("https://groq.test/openai/v1/embeddings").mock(
        side_effect=streamed(openai_answer(), 3, "application/json")  # a compatible server that ignores base64
    )
    answer = await sdk.embeddings.create(model="groq/nomic-embed", input=["first", "second"])
    assert vectors(answer) == VECTORS


@respx.mock
async def test_token_arrays_reach_an_openai_compatible_upstream(sdk: openai.AsyncOpenAI) -> None:
    route = respx.post(f"{OPENAI}/embeddings").mock(side_effect=streamed(openai_answer(), 9, "application/json"))
    await sdk.embeddings.create(model="openai/text-embedding-3-small", input=[[1, 2, 3], [0, 4]])
    assert orjson.loads(route.calls[0].request.content)["input"] == [[1, 2, 3], [0, 4]]
    route.mock(side_effect=streamed(openai_answer(count=1), 9, "application/json"))
    await sdk.embeddings.create(model="openai/text-embedding-3-small", input=[5, 6])
    assert orjson.loads(route.calls[1].request.content)["input"] == [[5, 6]]


@pytest.mark.parametrize("size", [1, 7, 1000])
@respx.mock
async def test_gemini_answers_through_batch_embed_contents(sdk: openai.AsyncOpenAI, size: int) -> None:
    body = orjson.dumps({"embeddings": [{"values": v} for v in VECTORS]})
    route = respx.post("https://gemini.test/v1beta/models/gemini-embedding-001:batchEmbedContents").mock(
        side_effect=streamed(body, size, "application/json")
    )
    answer = await sdk.embeddings.create(
        model="gemini/gemini-embedding-001", input=["first", "second text"], dimensions=3, encoding_format="float"
    )
    assert vectors(answer) == VECTORS
    assert answer.usage.prompt_tokens == 2 + 3  # Gemini counts none: about four characters a token
    request = route.calls[0].request
    assert request.headers["x-goog-api-key"] == "AIza-secret"
    part = {"model": "models/gemini-embedding-001", "outputDimensionality": 3}
    assert orjson.loads(request.content) == {
        "requests": [
            {**part, "content": {"parts": [{"text": "first"}]}},
            {**part, "content": {"parts": [{"text": "second text"}]}},
        ]
    }


@pytest.mark.parametrize("size", [1, 7, 1000])
@respx.mock
async def test_ollama_answers_through_api_embed(sdk: openai.AsyncOpenAI, size: int) -> None:
    body = orjson.dumps({"model": "nomic-embed-text", "embeddings": VECTORS, "prompt_eval_count": 4})
    route = respx.post("http://ollama.test:11434/api/embed").mock(side_effect=streamed(body, size, "application/json"))
    answer = await sdk.embeddings.create(model="ollama/nomic-embed-text", input=["first", "second"])
    assert vectors(answer) == VECTORS  # floats made base64 by the gateway, decoded by the SDK (exact in float32)
    assert answer.usage.prompt_tokens == 4
    assert orjson.loads(route.calls[0].request.content) == {"model": "nomic-embed-text", "input": ["first", "second"]}


async def test_anthropic_has_no_embeddings_and_the_400_names_the_alternatives(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.embeddings.create(model="anthropic/claude-sonnet-4-5", input="hi")
    assert refused.value.code == "model_not_embedding"
    for alternative in ("OpenAI", "Gemini", "Ollama", HASHING_MODEL):
        assert alternative in refused.value.message


@pytest.mark.parametrize("model", ["gemini/gemini-embedding-001", "ollama/nomic-embed-text"])
async def test_token_arrays_to_an_upstream_that_takes_only_text_are_a_400(sdk: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError, match="not token ids"):
        await sdk.embeddings.create(model=model, input=[[1, 2]])


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"model": HASHING_MODEL, "input": []}, "1 to 2048 items"),
        ({"model": HASHING_MODEL, "input": ["x"] * 2049}, "1 to 2048 items"),
        ({"model": HASHING_MODEL, "input": ["a", 1]}, "must be a string"),
        ({"model": HASHING_MODEL, "input": [[1], []]}, "must be a string"),
        ({"model": HASHING_MODEL, "input": [-1]}, "must be a string"),
        ({"model": HASHING_MODEL, "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": HASHING_MODEL, "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a"}, "model"),
        ({"model": "nope", "input": "a"}, "does not exist"),
    ],
)
async def test_bad_requests_are_a_4xx_that_says_what_to_do(body: dict[str, Any], says: str) -> None:
    async with sdk_http(create_app()) as http:
        response = await http.post("/v1/embeddings", json=body)
    assert response.status_code in (400, 404)
    assert says in response.json()["error"]["message"]


def fallback_config(**reliability: Any) -> GatewayConfig:
    deployments = [Deployment("openai", "text-embedding-3-small"), Deployment("ollama", "nomic-embed-text")]
    return GatewayConfig(
        http=HttpSettings(transport="httpx"),
        providers=CONFIG.providers,
        models={
            "embed": ModelConfig(deployments=deployments),
            "anthropic-first": ModelConfig(
                deployments=[Deployment("anthropic", "claude-sonnet-4-5"), Deployment("ollama", "nomic-embed-text")]
            ),
        },
        reliability=Reliability(**reliability),
    )


OLLAMA_BODY = orjson.dumps({"embeddings": VECTORS[:1], "prompt_eval_count": 1})


@respx.mock
async def test_a_failing_deployment_is_retried_then_the_fallback_answers(capfd: pytest.CaptureFixture[str]) -> None:
    primary = respx.post(f"{OPENAI}/embeddings").mock(
        return_value=httpx.Response(503, json={"error": {"message": "overloaded"}})
    )
    respx.post("http://ollama.test:11434/api/embed").mock(side_effect=streamed(OLLAMA_BODY, 4, "application/json"))
    app = create_app(fallback_config(retries=1, backoff=Backoff(base=0.001, max=0.002)))
    async with sdk_http(app) as http:
        response = await http.post("/v1/embeddings", json={"model": "embed", "input": "x"})
    assert response.status_code == 200
    assert response.headers["x-gateway-deployment"] == "ollama/nomic-embed-text"
    assert primary.call_count == 2
    [line] = access_lines(capfd)
    assert (line["path"], line["fallback"], line["retries"], line["deployment"]) == (
        "/v1/embeddings",
        True,
        1,
        "ollama/nomic-embed-text",
    )
    assert line["prompt_tokens"] == 1


@respx.mock
async def test_a_rejected_request_is_not_retried_and_says_why() -> None:
    primary = respx.post(f"{OPENAI}/embeddings").mock(
        return_value=httpx.Response(400, json={"error": {"message": "dimensions too large for this model"}})
    )
    async with sdk_http(create_app(fallback_config())) as http:
        response = await http.post("/v1/embeddings", json={"model": "embed", "input": "x"})
    assert response.status_code == 400
    assert "dimensions too large" in response.json()["error"]["message"]
    assert primary.call_count == 1


@respx.mock
async def test_a_silent_deployment_times_out_and_the_fallback_answers() -> None:
    async def silent(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    respx.post(f"{OPENAI}/embeddings").mock(side_effect=silent)
    respx.post("http://ollama.test:11434/api/embed").mock(side_effect=streamed(OLLAMA_BODY, 4, "application/json"))
    config = fallback_config(retries=0, timeouts=Timeouts(first_token=0.2))
    async with sdk_http(create_app(config)) as http:
        response = await http.post("/v1/embeddings", json={"model": "embed", "input": "x"})
    assert response.status_code == 200
    assert response.headers["x-gateway-deployment"] == "ollama/nomic-embed-text"


@respx.mock
async def test_a_deployment_without_embeddings_is_skipped() -> None:
    respx.post("http://ollama.test:11434/api/embed").mock(side_effect=streamed(OLLAMA_BODY, 4, "application/json"))
    async with sdk_http(create_app(fallback_config())) as http:
        response = await http.post("/v1/embeddings", json={"model": "anthropic-first", "input": "x"})
    assert response.status_code == 200
    assert response.headers["x-gateway-deployment"] == "ollama/nomic-embed-text"


@respx.mock
async def test_an_upstream_that_drops_a_vector_is_a_502_not_a_shifted_answer() -> None:
    one = orjson.dumps({"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 2}})
    respx.post(f"{OPENAI}/embeddings").mock(side_effect=streamed(one, 5, "application/json"))
    config = GatewayConfig(
        http=HttpSettings(transport="httpx"), providers=CONFIG.providers, reliability=Reliability(retries=0)
    )
    async with sdk_http(create_app(config)) as http:
        response = await http.post(
            "/v1/embeddings", json={"model": "openai/text-embedding-3-small", "input": ["a", "b"]}
        )
    assert response.status_code == 502
    assert "1 embeddings for 2 inputs" in response.json()["error"]["message"]


async def test_keys_rate_limits_and_metrics_apply_as_to_chat() -> None:
    key = "k-embed-0123456789"
    auth = AuthSettings(keys=[GatewayKey("embedder", key)], rate_limits=RateLimits(requests_per_minute=1))
    async with sdk_http(create_app(GatewayConfig(auth=auth))) as http:
        body = {"model": HASHING_MODEL, "input": "x"}
        assert (await http.post("/v1/embeddings", json=body)).status_code == 401
        headers = {"authorization": f"Bearer {key}"}
        before = (await http.get("/metrics")).text
        assert (await http.post("/v1/embeddings", json=body, headers=headers)).status_code == 200
        limited = await http.post("/v1/embeddings", json=body, headers=headers)
        assert limited.status_code == 429
        assert "retry-after" in limited.headers
        after = (await http.get("/metrics")).text
    labels = {"route": "/v1/embeddings", "provider": "hashing", "status": "200"}
    assert sample(after, "gateway_requests_total", **labels) - sample(before, "gateway_requests_total", **labels) == 1
