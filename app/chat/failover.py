"""Which deployment is tried next, and when: the plan's deployments in the balancer's order, retries
with backoff for fast failures, at once to the next after a silent one, a rescue when an answer broke
after it began, and the alias's context fallbacks for a prompt too long."""

from __future__ import annotations

import asyncio

from app.chat.attempt import Attempt
from app.chat.retrying import NOT_RETRIED, retry_delay, with_retry_hint
from app.errors import ApiError
from providers.base import ContextLengthError, Deployment, ProviderError
from providers.router import Plan


class Failover(Attempt):
    async def attempts(self) -> None:
        """The plan's deployments until one answers (see ``on``); a prompt too long for them goes to the
        alias's context fallbacks, in order, and without them it is the upstream's clean 400."""
        outcome = await self.through(self.plan, larger=False)
        for name in self.plan.context_fallbacks if outcome == "too_long" else ():
            try:
                plan = self.services.router.resolve(name)
            except ProviderError:
                continue  # its provider is not enabled here; start-up checked the name itself
            self.plan = plan
            self.record.notes = {**(self.record.notes or {}), "context_fallback": name}
            outcome = await self.through(plan, larger=True)
            if outcome != "too_long":
                break
        if outcome in ("next", "too_long"):
            assert self.error is not None
            await self.fail(ApiError.from_provider(self.hinted(self.error)))

    async def through(self, plan: Plan, *, larger: bool) -> str:
        """Each of the plan's deployments in the balancer's order, until one ends the exchange."""
        retries = plan.retries if plan.retries is not None else self.reliability.retries
        usable = self.usable_deployments(plan)
        if not usable:  # a context fallback that cannot take what only the client's dialect carries
            return "too_long"
        order = self.order = self.services.balancer.order(usable, plan.strategy)
        # The alias's first choice: for "fallback", its first deployment even while that one cools down.
        primary = usable[0] if plan.strategy == "fallback" else order[0]
        outcome = "next"
        for deployment in order:
            if self.rescue is not None and self.rescue.active:
                if f"{deployment.provider}/{deployment.model}" == self.rescue.broken:
                    continue
                retries = 0  # a continuation is asked of each deployment once
            outcome = await self.on(deployment, larger or deployment != primary, retries, alone=len(order) == 1)
            if outcome not in ("next", "rescue"):
                break
        return "next" if outcome == "rescue" else outcome

    async def on(self, deployment: Deployment, fallback: bool, retries: int, *, alone: bool) -> str:
        """Attempts on one deployment: ``done`` (answered, or failed for good), ``next`` (try the next one),
        ``too_long`` (the prompt does not fit: never retried unchanged) or ``out_of_time``.

        A fast failure (refused, 5xx, 429) is retried with backoff, ``retries`` times, unless it opened
        the deployment's circuit and another deployment is left. A silent one
        (no first token in time, or a stream that answered and then died before its first token) moves
        to the next deployment at once; a lone deployment gets one more try after it, and no more.
        """
        for attempt in range(retries + 1):
            if attempt:  # a retry of this deployment waits; a fallback to the next one does not
                assert self.error is not None
                if not await self.pause(self.error):  # no time left for it, nor for another deployment
                    await self.fail(ApiError.from_provider(self.hinted(self.error)))
                    return "out_of_time"
                self.record.retries += 1
                self.record.retry_kinds.append(self.error.code)
            self.record.fallback = fallback
            try:
                await self.attempt(deployment)
                return "done"
            except ProviderError as exc:
                self.error = exc
                # Once the answer began, a retry would repeat what the client saw, or run tools twice.
                began = self.deadlines.first_content and (self.chat.stream or self.tools is not None)
                if began and self.rescue is not None and self.encoder is self.framing:
                    return await self.rescued_or_not(exc, deployment)
                if isinstance(exc, ContextLengthError) and not began:
                    return "too_long"
                if isinstance(exc, NOT_RETRIED) or began:
                    await self.fail(ApiError.from_provider(exc))
                    return "done"
                if self.silent and (not alone or attempt > 0):
                    return "next"
                if not alone and self.services.balancer.is_open(deployment):
                    return "next"  # this failure opened its circuit (or failed its probe): the others serve
        return "next"

    async def rescued_or_not(self, error: ProviderError, deployment: Deployment) -> str:
        """A failure after the answer began, on an alias that can rescue it: the next deployment continues
        it (``rescue``), or the client gets the error; a continuation that failed before any of it
        arrived leaves the original error to tell (``next``)."""
        rescue = self.rescue
        assert rescue is not None
        if rescue.active and not rescue.after:
            assert rescue.original is not None
            self.error = rescue.original
            return "next"
        if not rescue.can_take(error):
            await self.fail(ApiError.from_provider(error))
            return "done"
        rescue.take(error, deployment)
        self.deadlines.restart_idle()  # the continuation's first text is bounded from now
        return "rescue"

    def hinted(self, error: ProviderError) -> ProviderError:
        return with_retry_hint(error, self.reliability, self.record.retries)

    def usable_deployments(self, plan: Plan) -> list[Deployment]:
        """The plan's deployments; only those that speak the client's dialect for a request that
        holds what the gateway cannot translate (the intake made sure the alias has one)."""
        original, router = self.ticket.original, self.services.router
        if self.ticket.untranslatable is None or original is None:
            return plan.deployments
        return [d for d in plan.deployments if router.same_dialect(d, original.dialect) is not None]

    async def pause(self, error: ProviderError) -> bool:
        """Backoff before a retry: the upstream's Retry-After (capped), else exponential with full jitter.

        False when the wait would outlast the total timeout: then there is no time for another attempt.
        """
        delay = retry_delay(error, self.reliability, self.record.retries)
        if delay >= self.deadlines.total_left():
            return False
        await asyncio.sleep(delay)
        return True
