"""Logging: structlog configured once, one JSON line per event through orjson.

uvicorn's own records go through the same renderer, so an operator reads one format.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson
import structlog

SHARED_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class StdoutSink:
    """Writes to whatever ``sys.stdout`` is at the time, so loggers cached on first use follow a
    redirected stdout (as test capture does) instead of holding the stream they first saw."""

    def write(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)

    def flush(self) -> None:
        sys.stdout.flush()


class Redactor:
    """Scrubs known secrets (provider and gateway keys) from every serialized log line, nested fields
    and tracebacks included, as the last step before the line is written."""

    def __init__(self) -> None:
        self.secrets: tuple[bytes, ...] = ()

    def set(self, secrets: list[str]) -> None:
        self.secrets = tuple(s.encode() for s in sorted(set(secrets), key=len, reverse=True) if len(s) >= 4)

    def bytes(self, obj: Any, **_: Any) -> bytes:
        line = orjson.dumps(obj)
        for secret in self.secrets:
            if secret in line:
                line = line.replace(secret, b"[redacted]")
        return line

    def text(self, obj: Any, **_: Any) -> str:
        return self.bytes(obj).decode()


REDACTOR = Redactor()
SINK = StdoutSink()
INFO_ENABLED = [True]  # whether the configured level lets info lines through; set by configure_logging


def info_line(event: str, fields: dict[str, object], request_id: str) -> None:
    """One info line written straight, for the one line every request writes (the access line): the
    same JSON, redaction and order as a structlog line bound to ``request_id``, without structlog's
    processor chain, which cost each request more than any other step of its own."""
    if not INFO_ENABLED[0]:
        return
    fields.update(event=event, request_id=request_id, level="info", timestamp=utc_now())
    SINK.write(REDACTOR.bytes(fields) + b"\n")
    SINK.flush()


def utc_now() -> str:
    """As structlog's ISO time stamper writes it: microseconds, and Z for UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


# Tracebacks without local variables: a provider's headers (and its key) are locals somewhere.
TRACEBACKS = structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))


def configure_logging(level: str, secrets: list[str] | None = None) -> None:
    if secrets is not None:
        REDACTOR.set(secrets)
    INFO_ENABLED[0] = logging.getLevelNamesMapping()[level.upper()] <= logging.INFO
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            TRACEBACKS,
            structlog.processors.JSONRenderer(serializer=REDACTOR.bytes),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.BytesLoggerFactory(SINK),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def json_text(obj: Any, **_: Any) -> str:
    """Redacted JSON for stdlib logging, which wants text; module-level so worker processes can pickle it."""
    return REDACTOR.text(obj)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """A logging.dictConfig that renders uvicorn's records as the same JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": SHARED_PROCESSORS,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    TRACEBACKS,
                    structlog.processors.JSONRenderer(serializer=json_text),
                ],
            }
        },
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "loggers": {"uvicorn": {"handlers": ["stdout"], "level": level.upper(), "propagate": False}},
    }
