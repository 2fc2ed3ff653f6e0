from __future__ import annotations

import pytest

from providers._sse import SSEDecoder, SSEEvent
from providers.base import UpstreamProtocolError


def decode_whole(data: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(data) + decoder.flush()


def decode_split(data: bytes, at: int) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(data[:at]) + decoder.feed(data[at:]) + decoder.flush()


def decode_bytewise(data: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for i in range(len(data)) for event in decoder.feed(data[i : i + 1])]
    return events + decoder.flush()


STREAM = (
    ": OPENROUTER PROCESSING\n"
    'data: {"text":"известни 🙂 \u2028 \u0085 \x1c"}\n\n'
    "event: message_delta\n"
    "data: line one\n"
    "data:line two\n\n"
    "id: 7\n"
    "data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"text":"известни 🙂 \u2028 \u0085 \x1c"}'),
    SSEEvent("line one\nline two", "message_delta"),
    SSEEvent("[DONE]", id="7"),
]
ENDINGS = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}


@pytest.mark.parametrize("ending", ENDINGS)
def test_every_split_point_of_every_line_ending_gives_the_same_events(ending: str) -> None:
    data = STREAM.replace("\n", ENDINGS[ending]).encode()
    assert decode_whole(data) == EXPECTED
    assert decode_bytewise(data) == EXPECTED
    for at in range(len(data) + 1):
        assert decode_split(data, at) == EXPECTED, at


def test_mixed_line_endings_in_one_stream() -> None:
    assert decode_whole(b"data: a\r\n\ndata: b\r\r\ndata: c\n\r") == [SSEEvent("a"), SSEEvent("b"), SSEEvent("c")]


def test_a_crlf_split_across_reads_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: B\r") == []
    assert decoder.feed(b"\ndata: C\r\n") == []
    assert decoder.feed(b"\r\n") == [SSEEvent("B\nC")]


@pytest.mark.parametrize(
    ("line", "value"),
    [(b"data:x", "x"), (b"data: x", "x"), (b"data:  x", " x"), (b"data", ""), (b"data:", "")],
)
def test_one_leading_space_is_removed_and_no_more(line: bytes, value: str) -> None:
    assert decode_whole(line + b"\ndata: end\n\n") == [SSEEvent(value + "\nend")]


def test_a_bom_is_skipped_once_even_when_split() -> None:
    data = b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n"
    assert decode_split(data, 2) == [SSEEvent("a")]  # the second BOM makes an unknown field name
    assert decode_whole(b"\xef\xbb\xbfdata: a\n\n") == [SSEEvent("a")]


def test_comments_and_unknown_fields_and_empty_events_are_ignored() -> None:
    data = b": ping\nfoo: bar\nData: no\n\nevent: ping\n\ndata: real\n\n"
    assert decode_whole(data) == [SSEEvent("real")]


def test_id_with_nul_is_ignored_and_id_persists() -> None:
    data = b"id: 1\ndata: a\n\nid: x\x00y\ndata: b\n\n"
    assert decode_whole(data) == [SSEEvent("a", id="1"), SSEEvent("b", id="1")]


def test_retry_is_read_only_when_digits() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 1500\n\nretry: soon\n\n")
    assert decoder.retry == 1500


def test_an_event_without_its_blank_line_at_eof_is_dropped() -> None:
    assert decode_whole(b"data: complete\n\ndata: unfinished") == [SSEEvent("complete")]
    assert decode_whole(b"data: complete\n\ndata: unfinished\n") == [SSEEvent("complete")]


def test_invalid_utf8_becomes_the_replacement_character() -> None:
    assert decode_whole(b"data: a\xffb\n\n") == [SSEEvent("a\ufffdb")]


@pytest.mark.parametrize(
    "data", [b"data: " + b"x" * 200, b"data: " + b"x" * 50 + b"\n" + (b"data: " + b"x" * 60 + b"\n") * 3]
)
def test_lines_and_events_past_the_cap_are_a_protocol_error(data: bytes) -> None:
    decoder = SSEDecoder(max_event_bytes=128)
    with pytest.raises(UpstreamProtocolError, match="128 bytes"):
        decoder.feed(data)


def test_a_large_event_in_many_reads_is_assembled() -> None:
    payload = "x" * 100_000
    data = f"data: {payload}\n\n".encode()
    decoder = SSEDecoder()
    events = [e for i in range(0, len(data), 1000) for e in decoder.feed(data[i : i + 1000])]
    assert events == [SSEEvent(payload)]
