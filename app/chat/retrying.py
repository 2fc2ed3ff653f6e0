"""What is retried, how long to wait before it, and what a request's first token may take: the
policy shared by chat exchanges and embedding calls."""

from __future__ import annotations

import random

from app.config import Reliability
from providers.base import InvalidRequestError, ModelNotFoundError, ProviderError, UpstreamAuthError
from providers.request import ChatRequest

NOT_RETRIED = (InvalidRequestError, UpstreamAuthError, ModelNotFoundError)


def asks_for_reasoning(chat: ChatRequest) -> bool:
    """Whether the model may think before its first token: then the longer first-token default applies."""
    return chat.reasoning_effort not in (None, "none", "minimal")


def retry_delay(error: ProviderError, reliability: Reliability, retries: int) -> float:
    """The upstream's Retry-After (capped), else exponential backoff with full jitter."""
    if error.retry_after is not None:
        return min(error.retry_after, reliability.retry_after_cap)
    return random.uniform(0, retry_delay_ceiling(reliability, retries))


def retry_delay_ceiling(reliability: Reliability, retries: int) -> float:
    backoff = reliability.backoff
    return float(min(backoff.max, backoff.base * 2**retries))


def with_retry_hint(error: ProviderError, reliability: Reliability, retries: int) -> ProviderError:
    """A 429 always says when to come back: the upstream's own hint, else the next backoff step (at
    least a second, as Retry-After counts in whole seconds)."""
    if error.status == 429 and error.retry_after is None:
        error.retry_after = max(1.0, retry_delay_ceiling(reliability, retries + 1))
    return error
