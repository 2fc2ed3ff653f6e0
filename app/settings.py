"""Process settings read from the environment: where to listen, how much to log, which config file."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from providers.base import digits_value

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_LOG_LEVEL = "127.0.0.1", 8000, "info"


class SettingsError(ValueError):
    """An environment variable has a value the gateway cannot use."""


class Settings(msgspec.Struct, frozen=True):
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    log_level: str = DEFAULT_LOG_LEVEL
    config_path: str | None = None
    workers: int = 1
    log_content: bool = False
    database_url: str | None = None  # the conversation store; overrides conversations.database_url
    redis_url: str | None = None  # the shared limits; overrides limits.redis_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            host=environ.get("HOST") or DEFAULT_HOST,
            port=parse_port(environ.get("PORT")),
            log_level=parse_log_level(environ.get("LOG_LEVEL")),
            config_path=environ.get("GATEWAY_CONFIG") or None,
            workers=parse_workers(environ.get("WORKERS")),
            log_content=environ.get("LOG_CONTENT", "").lower() in ("1", "true", "yes"),
            database_url=environ.get("DATABASE_URL") or None,
            redis_url=environ.get("REDIS_URL") or None,
        )


def parse_port(raw: str | None) -> int:
    if not raw:
        return DEFAULT_PORT
    port = digits_value(raw)
    if port is None or not 0 < port < 65536:
        raise SettingsError(f"PORT must be a whole number from 1 to 65535, got {raw!r}.")
    return port


def parse_workers(raw: str | None) -> int:
    if not raw:
        return 1
    workers = digits_value(raw)
    if workers is None or not 0 < workers <= 64:
        raise SettingsError(f"WORKERS must be a whole number from 1 to 64, got {raw!r}.")
    return workers


def parse_log_level(raw: str | None) -> str:
    if not raw:
        return DEFAULT_LOG_LEVEL
    level = raw.lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw!r}.")
    return level
