"""A file part (a PDF for the model to read) in each vendor's own form, or a 400 that says why not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from providers._http import HttpProvider
from providers.anthropic import AnthropicProvider
from providers.base import Deployment, InvalidRequestError, Original
from providers.gemini import GeminiProvider
from providers.ollama import OllamaProvider
from providers.openai import OpenAIProvider
from providers.openai_responses import OpenAIResponsesProvider
from providers.request import CHAT_REQUEST_DECODER, FIELDS_DECODER, ChatRequest

PDF = "data:application/pdf;base64,JVBERi0xLjQ="


def asking(*parts: dict[str, Any]) -> ChatRequest:
    content = [{"type": "text", "text": "Summarise this."}, *parts]
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    return CHAT_REQUEST_DECODER.decode(msgspec.json.encode(body))


def pdf(**file: str) -> dict[str, Any]:
    return {"type": "file", "file": file or {"file_data": PDF, "filename": "report.pdf"}}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def sent(provider: HttpProvider, request: ChatRequest) -> Any:
    return msgspec.json.decode(provider.build_request(request, Deployment(provider.name, "model-1")).content)


def test_openai_gets_the_part_as_it_came(client: httpx.AsyncClient) -> None:
    body = sent(OpenAIProvider("openai", client, api_key="k"), asking(pdf()))
    assert body["messages"][0]["content"][1] == pdf()


def test_anthropic_gets_a_document_block(client: httpx.AsyncClient) -> None:
    body = sent(AnthropicProvider("anthropic", client, api_key="k"), asking(pdf()))
    assert body["messages"][0]["content"][1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="},
        "title": "report.pdf",
    }


def test_gemini_gets_inline_data(client: httpx.AsyncClient) -> None:
    request = msgspec.structs.replace(asking(pdf()), stream=True)
    body = sent(GeminiProvider("gemini", client, api_key="k"), request)
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}}


def test_responses_gets_an_input_file(client: httpx.AsyncClient) -> None:
    body = sent(OpenAIResponsesProvider("openai", client, api_key="k"), asking(pdf(file_id="file-1")))
    assert body["input"][0]["content"][1] == {"type": "input_file", "file_id": "file-1"}


@pytest.mark.parametrize(
    ("provider", "part", "says"),
    [
        (OllamaProvider, pdf(), "Ollama cannot read files"),
        (AnthropicProvider, pdf(file_id="file-1"), "only inline"),
        (AnthropicProvider, pdf(file_data="data:text/csv;base64,YQ=="), "text/csv"),
    ],
)
def test_what_a_vendor_cannot_read_is_a_400_that_says_so(
    client: httpx.AsyncClient, provider: type[HttpProvider], part: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidRequestError, match=says):
        sent(provider("p", client, api_key="k"), asking(part))


def test_a_file_needs_its_data_or_an_id() -> None:
    with pytest.raises(msgspec.ValidationError, match="file_data"):
        asking({"type": "file", "file": {"filename": "a.pdf"}})


def test_unknown_chat_fields_go_to_an_openai_upstream_beside_the_built_body(client: httpx.AsyncClient) -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true,"prediction":{"type":"content"}}'
    fields = {k: v for k, v in FIELDS_DECODER.decode(raw).items() if k in ("logprobs", "prediction")}
    provider = OpenAIProvider("openai", client, api_key="k")
    request, _ = provider.same_dialect(
        CHAT_REQUEST_DECODER.decode(raw), Deployment("openai", "gpt-4o"), Original("openai", fields)
    )
    body = msgspec.json.decode(request.content)
    assert (body["model"], body["stream"]) == ("gpt-4o", True)
    assert (body["logprobs"], body["prediction"]) == (True, {"type": "content"})
