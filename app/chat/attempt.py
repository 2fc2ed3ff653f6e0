"""One attempt of an exchange on one deployment: its events, raced by the next deployment when the
alias hedges, captured for a rescue and for the stored turn, bounded by the attempt's deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import msgspec

from app.chat.answering import Answering
from app.chat.hedge import Race
from app.chat.retrying import asks_for_reasoning
from app.dialects.verbatim import VerbatimEncoder
from app.ops.tracing import TRACING, outcome
from providers.base import Deployment, Event, ProviderError


class Attempt(Answering):
    async def attempt(self, deployment: Deployment) -> None:
        """One attempt, in its own span when traces are on (its context goes upstream)."""
        with TRACING.attempt("chat", deployment.provider, deployment.model) as span:
            error: str | None = "cancelled"
            try:
                await self.run_attempt(deployment)
                error = None
            except ProviderError as exc:
                error = exc.code
                raise
            finally:
                if span is not None:
                    outcome(span, {"gen_ai.response.model": self.served}, error)

    async def run_attempt(self, deployment: Deployment) -> None:
        beside = self.next_in_order(deployment)
        merged = self.services.timeouts_for(deployment, self.plan.timeouts, thinking=asks_for_reasoning(self.chat))
        self.deployment = deployment = msgspec.structs.replace(deployment, timeouts=merged)
        self.record.deployment = f"{deployment.provider}/{deployment.model}"
        self.record.provider, self.record.upstream_model = deployment.provider, deployment.model
        events = self.events(deployment)
        self.answered_by(deployment.model)
        if beside is not None and self.may_hedge():
            events = self.hedged(events, deployment, beside)
        if self.rescue is not None:
            events = self.rescue.capture(events)
        if self.turn is not None:
            events = self.turn.capture(events, verbatim=isinstance(self.encoder, VerbatimEncoder))
        self.phase, self.answered, self.silent = "connecting", False, False
        self.attempt_task = task = asyncio.ensure_future(
            self.relay(events) if self.chat.stream else self.collect(events)
        )
        self.deadlines.attempt(merged)
        self.services.balancer.started(deployment)
        failed = True
        try:
            await task
            failed = False
        except asyncio.CancelledError:
            failed = self.deadlines.expired is not None
            if not failed or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            raise self.deadlines.timeout_error(deployment.provider) from None
        except ProviderError:
            self.silent = self.answered and not self.deadlines.first_content
            raise
        finally:
            if self.deadlines.expired == "first_token":
                self.silent = True
            self.attempt_task = None
            self.deadlines.attempt_over()
            self.services.balancer.finished(deployment, failed=failed)
            if isinstance(self.encoder, VerbatimEncoder):
                self.opened = self.opened or self.encoder.opened

    def next_in_order(self, deployment: Deployment) -> Deployment | None:
        position = self.order.index(deployment) if deployment in self.order else -1
        return self.order[position + 1] if 0 <= position < len(self.order) - 1 else None

    def may_hedge(self) -> bool:
        """Whether this attempt may be raced by the next deployment: the alias hedges, and the request
        is the gateway's own (no MCP tools, not relayed as it came, not a rescue)."""
        if self.plan.hedge_after_seconds is None or self.tools is not None or self.encoder is not self.framing:
            return False
        return not self.deadlines.first_content and not (self.rescue is not None and self.rescue.active)

    def hedged(
        self, events: AsyncGenerator[Event, None], first: Deployment, second: Deployment
    ) -> AsyncGenerator[Event, None]:
        """The first deployment's events, raced by the second's once it has been slow to its first content."""
        thinking = asks_for_reasoning(self.chat)
        second = msgspec.structs.replace(
            second, timeouts=self.services.timeouts_for(second, self.plan.timeouts, thinking=thinking)
        )

        def start() -> AsyncGenerator[Event, None]:
            self.services.balancer.started(second)
            return self.services.router.provider(second).stream(self.chat, second)

        def won(index: int) -> None:
            if not race.hedged:
                return
            self.services.balancer.finished(second, failed=False)
            winner, loser = (second, first) if index else (first, second)
            if index:
                self.deployment = second
                self.record.deployment = f"{second.provider}/{second.model}"
                self.record.provider, self.record.upstream_model = second.provider, second.model
                self.record.fallback = True
                self.answered_by(second.model)
            self.record.notes = {
                **(self.record.notes or {}),
                "hedged": {
                    "after_seconds": self.plan.hedge_after_seconds,
                    "winner": f"{winner.provider}/{winner.model}",
                    "cancelled": f"{loser.provider}/{loser.model}",
                },
            }

        assert self.plan.hedge_after_seconds is not None
        race = Race(self.plan.hedge_after_seconds, start, won)
        return race.run(events)

    def events(self, deployment: Deployment) -> AsyncGenerator[Event, None]:
        """The attempt's events: the client's own request to an upstream that speaks its dialect, else
        the canonical one; through the tool loop when the model was offered MCP tools."""
        original = self.ticket.original
        same = self.services.router.same_dialect(deployment, original.dialect) if original else None
        self.encoder = self.framing
        if self.rescue is not None and self.rescue.active:
            provider = self.services.router.provider(deployment)
            return provider.stream(self.rescue.request(self.chat, getattr(provider, "prefill", False)), deployment)
        if same is None:
            provider = self.services.router.provider(deployment)
            if self.tools is not None:
                return self.tools.run(lambda chat: provider.stream(chat, deployment), self.chat)
            return provider.stream(self.chat, deployment)
        if self.tools is not None:
            return self.tools.run(lambda chat: same.stream(chat, deployment, original), self.chat)
        if original is not None and original.verbatim:
            self.encoder = VerbatimEncoder(self.framing, self.opened)
        return same.stream(self.chat, deployment, original)
