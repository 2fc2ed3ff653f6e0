"""The optional YAML config file named by GATEWAY_CONFIG, with ${VAR} and ${VAR:-default} interpolation.

Bad configuration stops start-up with a message naming the key and the problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import yaml

from app.http.auth import AuthSettings
from app.limits.rules import Price
from providers import TRANSPORTS
from providers.balancer import Cooldown
from providers.base import Timeouts
from providers.catalog import ProviderSpec
from providers.mcp import McpServerSpec
from providers.router import ModelConfig

MIB = 1024 * 1024
T = TypeVar("T")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The config file cannot be used; the message says which key and why."""


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * MIB)] = 8 * MIB
    # Where rate limits, budgets and usage are counted: Redis when set (REDIS_URL wins), else this process.
    redis_url: str | None = None
    redis_prefix: Annotated[str, msgspec.Meta(min_length=1)] = "gateway"
    on_redis_down: Literal["open", "closed"] = "open"  # serve without limits, or refuse with a 503
    # What a call without max_tokens reserves for its output, against token limits and budgets.
    output_allowance: Annotated[int, msgspec.Meta(ge=1)] = 4096


class HttpSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # What runs beneath httpx (providers.TRANSPORTS). aiohttp's pool, chosen by `make bench`:
    # httpx's own pool added +945 ms to TTFT at p50 at 100 streams, aiohttp's +27 ms.
    transport: str = "aiohttp"


Seconds = Annotated[float, msgspec.Meta(ge=0)]
# An answer may stream for long. ``first_token`` is left unset here: see ``with_first_token``.
DEFAULT_TIMEOUTS = Timeouts(connect=10.0, idle=120.0, total=1800.0)
# When no layer sets ``first_token``: a silent upstream and a thinking one look the same on the wire
# (OpenAI's Chat Completions sends nothing at all while a model reasons), so the default depends on
# what the request asks. Without reasoning, 25 s: a silent deployment fails over at once, and twice
# 25 s (the one retry a lone deployment gets) stays under a minute. With reasoning asked for, 300 s:
# the keep-alive comments hold the client's connection meanwhile.
FIRST_TOKEN_SECONDS = 25.0
THINKING_FIRST_TOKEN_SECONDS = 300.0


def with_first_token(timeouts: Timeouts, thinking: bool) -> Timeouts:
    if timeouts.first_token is not None:
        return timeouts
    default = THINKING_FIRST_TOKEN_SECONDS if thinking else FIRST_TOKEN_SECONDS
    return msgspec.structs.replace(timeouts, first_token=default)


class Backoff(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base: Annotated[float, msgspec.Meta(gt=0)] = 0.25  # doubled on each retry, with full jitter
    max: Annotated[float, msgspec.Meta(gt=0)] = 8.0


class Reliability(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    backoff: Backoff = Backoff()
    retry_after_cap: Seconds = 30.0  # an upstream's Retry-After is honoured up to this
    keepalive_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    shutdown_grace_seconds: Seconds = 30.0
    # After SIGTERM: GET /health/ready says 503 while the gateway still serves, so that a balancer polling
    # it stops sending first; then it stops accepting. 0: it stops accepting at once.
    drain_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 0.0
    cooldown: Cooldown = Cooldown()


class CorsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    allow_origins: list[str] = []  # empty: CORS off
    allow_credentials: bool = False


Count = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Tokens = Annotated[int, msgspec.Meta(ge=1)]
DEFAULT_DATABASE_URL = "sqlite:///data/conversations.db"


class HistoryLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How much of a conversation goes upstream with each turn, for one model."""

    max_messages: Count | None = None
    max_tokens: Tokens | None = None


class ConversationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # DATABASE_URL, when set, takes precedence: it is how a deployment points replicas at PostgreSQL.
    database_url: str = DEFAULT_DATABASE_URL
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=200)] = 10
    max_messages: Count = 20  # the last N stored messages go upstream with each turn
    max_tokens: Tokens | None = None  # an estimated budget for the whole prompt; oldest history dropped first
    # A second turn on a conversation waits this long for the one in flight, then gets a 409.
    turn_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    models: dict[str, HistoryLimits] = {}  # per model name as clients send it (alias or provider/model)
    # Stored Responses-API answers (store: true) are kept this long, as OpenAI keeps its own for 30 days.
    responses_days: Annotated[float, msgspec.Meta(gt=0, le=3650)] = 30.0
    # Whether GET /health/ready says 503 while the database does not answer. Off by default: replicas
    # share it, and taking them all out of the balancer for it would stop chats that need no history too.
    required: bool = False

    def limits_for(self, model: str) -> tuple[int, int | None]:
        own = self.models.get(model, HistoryLimits())
        max_messages = own.max_messages if own.max_messages is not None else self.max_messages
        return max_messages, own.max_tokens if own.max_tokens is not None else self.max_tokens


class ToolLoopSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_rounds: Annotated[int, msgspec.Meta(ge=1, le=50)] = 8  # model calls in one request, tool rounds between
    refresh_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0  # how often MCP servers' tool lists are re-read


class TracingSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # OpenTelemetry traces over OTLP HTTP: on when this says so or OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set.
    enabled: bool = False


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    limits: Limits = Limits()
    auth: AuthSettings = AuthSettings()
    prices: dict[str, Price] = {}  # per million tokens, by the model name clients send or provider/model
    cors: CorsSettings = CorsSettings()
    http: HttpSettings = HttpSettings()
    reliability: Reliability = Reliability()
    conversations: ConversationSettings = ConversationSettings()
    mcp_servers: dict[str, McpServerSpec] = {}
    tool_loop: ToolLoopSettings = ToolLoopSettings()
    tracing: TracingSettings = TracingSettings()
    providers: dict[str, ProviderSpec] = {}
    models: dict[str, ModelConfig] = {}


def load_config(path: str | None, environ: Mapping[str, str] = os.environ) -> GatewayConfig:
    if path is None:
        return GatewayConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"GATEWAY_CONFIG names {path!r}, which cannot be read: {exc.strerror}.") from exc
    return parse_config(text, source=path, environ=environ)


def parse_config(text: str, *, source: str, environ: Mapping[str, str]) -> GatewayConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {source} is not valid YAML: {exc}") from exc
    data = interpolate(data or {}, environ)
    # msgspec names a dict entry `[...]`, so each entry is checked on its own to name its key.
    for section, kind in (("providers", ProviderSpec), ("models", ModelConfig), ("mcp_servers", McpServerSpec)):
        entries = data.get(section) if isinstance(data, dict) else None
        for name, entry in entries.items() if isinstance(entries, dict) else ():
            convert(entry, kind, source, f"{section}.{name}")
    config = convert(data, GatewayConfig, source, "")
    if config.http.transport not in TRANSPORTS:
        raise ConfigError(
            f"Config file {source}: http.transport is {config.http.transport!r}; use one of {', '.join(TRANSPORTS)}."
        )
    if "simulated" in config.providers:
        raise ConfigError(f"Config file {source}: providers.simulated is the built-in provider's name; pick another.")
    return config


def convert(data: Any, kind: type[T], source: str, key: str) -> T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"Config file {source}: {describe(exc, key)}") from exc


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string value; an unset VAR without default is empty."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    return value


def describe(exc: msgspec.ValidationError, key: str) -> str:
    """msgspec's '... - at `$.limits.x`' as '... at key limits.x', under ``key`` when given."""
    message, _, path = str(exc).partition(" - at `$")
    full = ".".join(filter(None, (key, path.rstrip("`").lstrip("."))))
    return f"{message} at key {full}" if full else message


def check_providers(config: GatewayConfig, providers: Collection[str]) -> None:
    """Every alias names a provider the gateway knows, enabled or not (a missing key is a 404 later, with a hint),
    and MCP servers that are configured."""
    for name, alias in config.models.items():
        for server in alias.mcp:
            if server not in config.mcp_servers:
                known = ", ".join(sorted(config.mcp_servers)) or "none"
                raise ConfigError(
                    f"Config key models.{name}.mcp names MCP server {server!r}, which is not under mcp_servers "
                    f"(configured: {known})."
                )
        for larger in alias.context_fallbacks:
            prefix, slash, _ = larger.partition("/")
            if larger == name or not (larger in config.models or (slash and prefix in providers)):
                raise ConfigError(
                    f"Config key models.{name}.context_fallbacks names {larger!r}, which is neither another alias "
                    "nor a provider/model name of a provider this gateway knows."
                )
        for deployment in alias.deployment_list():
            if deployment.provider not in providers:
                raise ConfigError(
                    f"Config key models.{name} names provider {deployment.provider!r}, which is not a provider "
                    f"this gateway knows; it knows {', '.join(sorted(providers))}. Add it under providers:."
                )
