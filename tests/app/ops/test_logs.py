from __future__ import annotations

import logging
import logging.config
from datetime import datetime

import orjson
import pytest
import structlog

from app.ops.logs import configure_logging, info_line, uvicorn_log_config


def test_structlog_lines_are_json_with_level_and_time(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    structlog.get_logger("t").info("hello", answer=42)
    structlog.get_logger("t").debug("hidden")
    [line] = [orjson.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert line["event"] == "hello"
    assert line["answer"] == 42
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_uvicorn_records_render_as_the_same_json(capfd: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("uvicorn")
    saved = logger.handlers[:], logger.level, logger.propagate
    try:
        # Configured inside the test: pytest swaps stdout between setup and call.
        logging.config.dictConfig(uvicorn_log_config("info"))
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    [line] = [orjson.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert line["event"] == "Started server process [7]"
    assert line["level"] == "info"


def test_the_access_line_written_straight_reads_as_a_structlog_line_would(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", secrets=["sk-very-secret"])
    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        structlog.get_logger("t").info("request", status=200, note="key sk-very-secret")
    info_line("request", {"status": 200, "note": "key sk-very-secret"}, "r-1")
    by_structlog, straight = [orjson.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert list(straight) == list(by_structlog)  # the same fields, in the same order
    assert {**straight, "timestamp": None} == {**by_structlog, "timestamp": None}
    assert straight["note"] == "key [redacted]"
    assert straight["timestamp"].endswith("Z")
    assert (
        abs(datetime.fromisoformat(straight["timestamp"]) - datetime.fromisoformat(by_structlog["timestamp"])).seconds
        < 5
    )


def test_the_access_line_follows_the_configured_level(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning")
    info_line("request", {"status": 200}, "r-2")
    configure_logging("info")
    assert capfd.readouterr().out == ""
