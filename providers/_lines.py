"""A sans-I/O newline-delimited JSON splitter (Ollama's stream): bytes in, complete lines out.

Lines end at LF only; empty lines are skipped; a last line without LF counts at end of stream.
Decoding the JSON is the vendor's job, with its own typed decoder.
"""

from __future__ import annotations

from providers.base import UpstreamProtocolError

MAX_LINE_BYTES = 32 * 1024 * 1024


class NDJSONDecoder:
    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES):
        self.max_line_bytes = max_line_bytes
        self.partial = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self.partial += chunk
            self.check_size()
            return []
        if self.partial:
            chunk = bytes(self.partial) + chunk
            self.partial.clear()
        *lines, rest = chunk.split(b"\n")
        self.partial += rest
        self.check_size()
        return [line for line in (raw.rstrip(b"\r") for raw in lines) if line.strip()]

    def flush(self) -> list[bytes]:
        line, self.partial = bytes(self.partial).rstrip(b"\r"), bytearray()
        return [line] if line.strip() else []

    def check_size(self) -> None:
        if len(self.partial) > self.max_line_bytes:
            raise UpstreamProtocolError(
                f"The provider sent a line longer than {self.max_line_bytes} bytes; the gateway stopped "
                "reading it rather than exhaust its memory."
            )
