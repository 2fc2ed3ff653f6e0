from __future__ import annotations

import logging
import logging.config

import orjson
import pytest
import structlog

from app.ops.logs import configure_logging, uvicorn_log_config


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
