"""A provider that plays a script of events and failures, for driving the pipeline in tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from providers.base import Deployment, Event
from providers.request import ChatRequest


class ScriptedProvider:
    """Yields ``script`` in order; an exception in the script is raised at that point."""

    def __init__(self, script: Sequence[Event | Exception], name: str = "fake", models: tuple[str, ...] = ("fake",)):
        self.script = script
        self.name = name
        self.models = models
        self.closed_streams = 0
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncGenerator[Event, None]:
        self.requests.append(request)
        try:
            for item in self.script:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed_streams += 1

    async def aclose(self) -> None:
        return None
