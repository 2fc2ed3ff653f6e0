"""A sans-I/O server-sent events decoder, following WHATWG HTML §9.2.6: bytes in, events out.

Lines end at CRLF, LF or CR, in any mix; a CR at the end of one read and an LF at the start of the
next are one line end. Lines are split on raw bytes (CR and LF never occur inside a multi-byte UTF-8
sequence) and decoded per complete line, with U+FFFD for invalid bytes. Never ``str.splitlines``: it
also splits on U+2028 and friends, which JSON strings may hold raw.
"""

from __future__ import annotations

import msgspec

from providers.base import UpstreamProtocolError

MAX_EVENT_BYTES = 32 * 1024 * 1024
LINE_ENDS = (b"\n", b"\r")


class SSEEvent(msgspec.Struct, frozen=True):
    data: str
    event: str = "message"
    id: str | None = None
    raw: bytes = b""  # the event's lines as they came, when the decoder keeps them


class SSEDecoder:
    """``feed(chunk) -> list[SSEEvent]``; ``flush()`` at end of stream drops an unfinished event, per the spec.

    With ``keep_raw``, each event also carries its bytes as they came (its own comment lines
    included), so a relay can pass a stream on event by event, never half an event.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES, keep_raw: bool = False):
        self.max_event_bytes = max_event_bytes
        self.keep_raw = keep_raw
        self.raw: list[bytes] = []
        self.partial = bytearray()  # an unfinished line
        self.skip_lf = False  # the previous read ended in CR: an LF now is part of that line end
        self.at_start = True  # a BOM is skipped once, at the very start
        self.data: list[str] = []
        self.data_size = 0
        self.event_type = ""
        self.last_event_id: str | None = None
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self.skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self.skip_lf = False
        if not chunk:
            return []
        if b"\n" not in chunk and b"\r" not in chunk:
            self.partial += chunk
            self.check_size(len(self.partial))
            return []
        if self.partial:
            chunk = bytes(self.partial) + chunk
            self.partial.clear()
        if self.at_start:
            chunk = chunk.removeprefix(b"\xef\xbb\xbf")
            self.at_start = False
        lines = chunk.splitlines(keepends=True)
        if not lines[-1].endswith(LINE_ENDS):
            self.partial += lines.pop()
            self.check_size(len(self.partial))
        elif lines[-1].endswith(b"\r"):
            self.skip_lf = True
        events: list[SSEEvent] = []
        for line in lines:
            if self.keep_raw:
                self.raw.append(line)
            event = self.process(line.rstrip(b"\r\n"))
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: an unterminated last line still counts, but an event without its blank line is dropped."""
        if self.partial:
            self.process(bytes(self.partial))
            self.partial.clear()
        self.data, self.data_size, self.event_type = [], 0, ""
        self.raw.clear()
        return []

    def process(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self.dispatch()
        if line[:1] == b":":
            return None  # a comment: keep-alives such as ": OPENROUTER PROCESSING"
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            text = value.decode("utf-8", "replace")
            self.data.append(text)
            self.data_size += len(value) + 1
            self.check_size(self.data_size)
        elif name == b"event":
            self.event_type = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry = int(value)
        return None

    def dispatch(self) -> SSEEvent | None:
        if not self.data:
            self.event_type = ""
            self.raw.clear()  # comments alone are not relayed: the gateway sends its own keep-alives
            return None
        raw = b""
        if self.keep_raw:
            raw = b"".join(self.raw)
            self.raw.clear()
        event = SSEEvent("\n".join(self.data), self.event_type or "message", self.last_event_id, raw)
        self.data, self.data_size, self.event_type = [], 0, ""
        return event

    def check_size(self, size: int) -> None:
        if size > self.max_event_bytes:
            raise UpstreamProtocolError(
                f"The provider sent a server-sent event larger than {self.max_event_bytes} bytes; the gateway "
                "stopped reading it rather than exhaust its memory."
            )
