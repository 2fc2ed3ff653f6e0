"""``POST /v1/embeddings``: OpenAI's embeddings API, answered by any provider that has one.

The model resolves to a plan like a chat's, and the call follows the same rules: each deployment
in the balancer's order, each retried with backoff (400, 401, 403 and 404 never are), the
deployment's timeouts (``first_token`` bounds one attempt, since the answer comes whole; ``total``
bounds them all), cooldowns, the access line and the metrics. Deployments whose provider has no
embeddings API (Anthropic) are skipped; a plan with none left is a 400 that names the alternatives.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from app.chat.retrying import NOT_RETRIED, retry_delay, with_retry_hint
from app.dialects.embeddings import EMBEDDINGS_DECODER, answer, canonical
from app.errors import JSON, ApiError
from app.http.access import ACCESS_KEY, AccessRecord
from app.http.auth import owner_of
from app.http.bodies import decode_json, read_json_bytes
from app.ops.tracing import TRACING, call_outcome, outcome, trace_context
from app.services import Services, services_of
from providers.base import Deployment, ProviderError, UpstreamTimeoutError, Usage
from providers.embeddings import HASHING_MODEL, Embedded, Embedder, EmbeddingRequest, estimate_tokens
from providers.router import Plan

MODEL_LOG_LIMIT = 200


async def create_embedding(request: Request) -> Response:
    services = services_of(request)
    body = decode_json(await read_json_bytes(request, services.config.limits.max_body_bytes), EMBEDDINGS_DECODER)
    embedding_request = canonical(body)
    record: AccessRecord = request.scope.get(ACCESS_KEY) or AccessRecord()
    record.model = body.model[:MODEL_LOG_LIMIT]
    plan, owner = services.router.resolve(body.model), owner_of(request.scope)
    deployments = [f"{d.provider}/{d.model}" for d in plan.deployments]
    with TRACING.call(trace_context(request.headers), "embeddings", body.model) as span:
        hold = await services.quotas.reserve(owner, body.model, deployments, estimate_tokens(embedding_request), 0)
        try:
            result = await EmbeddingCall(services, plan, record).run(embedding_request)
            record.account(Usage(prompt_tokens=result.prompt_tokens), None)
            record.status = 200
        finally:
            await services.quotas.settle(owner, hold, body.model, record.deployment, record.usage)
            call_outcome(span, record)
    headers = {"x-gateway-deployment": record.deployment} if record.deployment else None
    return Response(answer(body, result), media_type=JSON, headers=headers)


class EmbeddingCall:
    def __init__(self, services: Services, plan: Plan, record: AccessRecord):
        self.services, self.plan, self.record = services, plan, record
        self.reliability = services.config.reliability

    def embedders(self) -> list[tuple[Deployment, Embedder]]:
        providers = self.services.router.providers
        found: list[tuple[Deployment, Embedder]] = [
            (d, p) for d in self.plan.deployments if isinstance(p := providers[d.provider], Embedder)
        ]
        if not found:
            raise no_embeddings(self.record.model or "", self.plan.deployments[0].provider)
        return found

    async def run(self, request: EmbeddingRequest) -> Embedded:
        embedders = dict(self.embedders())
        order = self.services.balancer.order(list(embedders), self.plan.strategy)
        retries = self.plan.retries if self.plan.retries is not None else self.reliability.retries
        total = self.services.timeouts_for(order[0], self.plan.timeouts).total or 0.0
        deadline = time.monotonic() + total
        error: ProviderError | None = None
        for position, deployment in enumerate(order):
            for attempt in range(retries + 1):
                if attempt:
                    assert error is not None
                    delay = retry_delay(error, self.reliability, self.record.retries)
                    if delay >= deadline - time.monotonic():
                        break
                    await asyncio.sleep(delay)
                    self.record.retries += 1
                    self.record.retry_kinds.append(error.code)
                self.record.fallback = position > 0
                try:
                    return await self.attempt(embedders[deployment], deployment, request, deadline)
                except ProviderError as exc:
                    error = exc
                    if isinstance(exc, NOT_RETRIED):
                        raise self.failed(exc) from None
            if deadline <= time.monotonic():
                break
        assert error is not None
        raise self.failed(error)

    async def attempt(
        self, embedder: Embedder, deployment: Deployment, request: EmbeddingRequest, deadline: float
    ) -> Embedded:
        timeouts = self.services.timeouts_for(deployment, self.plan.timeouts)
        deployment = msgspec.structs.replace(deployment, timeouts=timeouts)
        self.record.deployment = f"{deployment.provider}/{deployment.model}"
        self.record.provider, self.record.upstream_model = deployment.provider, deployment.model
        bound = min(timeouts.first_token or float("inf"), deadline - time.monotonic())
        balancer = self.services.balancer
        balancer.started(deployment)
        failed = True
        with TRACING.attempt("embeddings", deployment.provider, deployment.model) as span:
            try:
                async with asyncio.timeout(max(bound, 0.0)):
                    result = await embedder.embed(request, deployment)
                failed = False
            except TimeoutError:
                raise UpstreamTimeoutError(f"{deployment.provider} did not answer within {bound:.3g} s.") from None
            finally:
                balancer.finished(deployment, failed=failed)
                outcome(span, {}, "upstream_error" if failed else None)
        self.record.mark_first_token()
        return result

    def failed(self, error: ProviderError) -> ApiError:
        self.record.error = error.code
        return ApiError.from_provider(with_retry_hint(error, self.reliability, self.record.retries))


def no_embeddings(model: str, provider: str) -> ApiError:
    return ApiError(
        400,
        f"The model {model!r} is served by {provider}, which has no embeddings API. Use an embedding model of "
        f"OpenAI, Gemini, Ollama or any OpenAI-compatible server (e.g. openai/text-embedding-3-small), or the "
        f"built-in {HASHING_MODEL}, which needs no key.",
        code="model_not_embedding",
        param="model",
    )
