from __future__ import annotations

import pytest

from providers._lines import NDJSONDecoder
from providers.base import UpstreamProtocolError

STREAM = b'{"a":"\xd0\xb8\xd0\xb7"}\n\n{"b":2}\r\n{"c":"\\u003c"}\n{"last":true}'
EXPECTED = [b'{"a":"\xd0\xb8\xd0\xb7"}', b'{"b":2}', b'{"c":"\\u003c"}', b'{"last":true}']


def test_every_split_point_gives_the_same_lines() -> None:
    for at in range(len(STREAM) + 1):
        decoder = NDJSONDecoder()
        assert decoder.feed(STREAM[:at]) + decoder.feed(STREAM[at:]) + decoder.flush() == EXPECTED, at


def test_byte_by_byte() -> None:
    decoder = NDJSONDecoder()
    lines = [line for i in range(len(STREAM)) for line in decoder.feed(STREAM[i : i + 1])]
    assert lines + decoder.flush() == EXPECTED


def test_a_line_past_the_cap_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        NDJSONDecoder(max_line_bytes=10).feed(b"x" * 11)
