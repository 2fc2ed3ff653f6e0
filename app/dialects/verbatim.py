"""The answer of an upstream that speaks the client's own dialect (Anthropic to Anthropic): its bytes
go to the client as they came, event by event, and only the ending is read from the canonical events.

The exchange still enforces every deadline and the terminator check on those events; a failure is
framed by the client's own dialect, as on any other stream.
"""

from __future__ import annotations

from app.dialects.answer import Ending, EndingView
from app.dialects.base import StreamEncoder, Summary
from app.errors import ApiError
from providers.base import Event, Verbatim


class VerbatimEncoder(EndingView):
    """``opened``: whether an opening event already reached the client (from an earlier attempt):
    the upstream's own is then left out, so the client sees one."""

    def __init__(self, framing: StreamEncoder, opened: bool):
        self.framing = framing  # the dialect's own encoder, for the error event
        self.skip_openings = opened  # fixed for the attempt: an opening may be several events (Responses)
        self.opened = opened
        self.ending = Ending()

    def serve(self, model: str) -> None:
        self.framing.serve(model)  # for the error event; the upstream's bytes name their own model

    def opening(self) -> bytes | None:
        return None  # the upstream's opening comes among its bytes

    def encode(self, event: Event) -> bytes | None:
        if type(event) is Verbatim:
            if event.opening:
                if self.skip_openings:
                    return None
                self.opened = True
            return event.data
        self.ending.take(event)
        return None

    def end(self, summary: Summary) -> list[bytes]:
        return []  # the upstream's closing events were relayed as they came

    def error(self, error: ApiError, request_id: str) -> bytes:
        return self.framing.error(error, request_id)
