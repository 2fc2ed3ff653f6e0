"""Hedging the first token: when the first deployment has sent no content ``after`` seconds in, the
next one is started beside it; whichever sends content first serves the answer, and the other is
cancelled, which closes its connection as a client's disconnect would.

``race`` merges the two event streams into one: the first ``Start`` goes on at once (the status can be
committed), each stream's other events are held until one of them sends content (or its finish), and
then only the winner's events follow. A stream that fails before content leaves the race to the
other; only when both have failed does the race fail, with the last error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from providers.base import CONTENT_EVENTS, Event, Finish, ProviderError, Start

Stream = AsyncGenerator[Event, None]


class Race:
    """Who raced and who won: ``on_win`` hears the winner's index (0 the first, 1 the hedge)."""

    def __init__(self, after: float, start_second: Callable[[], Stream], on_win: Callable[[int], None]):
        self.after, self.start_second, self.on_win = after, start_second, on_win
        self.hedged = False

    async def run(self, first: Stream) -> Stream:
        streams: dict[int, Stream] = {0: first}
        pending: dict[int, asyncio.Future[Event]] = {0: asyncio.ensure_future(anext(first))}
        held: dict[int, list[Event]] = {0: [], 1: []}
        started = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.after
        winner: int | None = None
        try:
            while winner is None:
                timeout = None if self.hedged else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(pending.values(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:  # no content in time: the hedge starts beside the first
                    self.hedged = True
                    streams[1] = self.start_second()
                    pending[1] = asyncio.ensure_future(anext(streams[1]))
                    continue
                for index in [i for i, task in pending.items() if task in done]:
                    task = pending.pop(index)
                    try:
                        event = task.result()
                    except (StopAsyncIteration, ProviderError):
                        if not pending:
                            raise
                        streams.pop(index)
                        continue
                    if isinstance(event, CONTENT_EVENTS) or type(event) is Finish:
                        winner = index
                        held[index].append(event)
                        break
                    if type(event) is Start and not started:
                        started = True
                        yield event  # the status can go as soon as either answers
                    elif type(event) is not Start:
                        held[index].append(event)
                    pending[index] = asyncio.ensure_future(anext(streams[index]))
        finally:
            for index, task in pending.items():
                if index != winner:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            for index, stream in streams.items():
                if index != winner:
                    await stream.aclose()
        self.on_win(winner)
        try:
            for event in held[winner]:
                yield event
            async for event in streams[winner]:
                yield event
        finally:
            await streams[winner].aclose()
