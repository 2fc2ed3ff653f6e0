"""``python -m app``: start the gateway with uvicorn, honouring HOST, PORT, LOG_LEVEL, GATEWAY_CONFIG and WORKERS."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import uvicorn

from app.config import ConfigError, GatewayConfig, load_config
from app.limits.rules import Budgets, RateLimits
from app.ops.logs import uvicorn_log_config
from app.settings import Settings, SettingsError
from providers import Proxies, ProxyConfigError


def main() -> int:
    try:
        settings = Settings.from_env()
        config = load_config(settings.config_path)  # fail before uvicorn starts, with a message
    except (SettingsError, ConfigError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    unshared = unshared_limits(settings, config)
    if unshared:
        print(f"gateway: {unshared}", file=sys.stderr)
        return 2
    if config.http.transport == "native":
        try:
            Proxies()  # what it cannot go through stops it here, not in each worker
        except ProxyConfigError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Set before the workers start, so each counts into files that /metrics adds up.
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _serve(settings, config)
    finally:
        if metrics_dir is not None:  # ours, so ours to remove; a user's directory is left alone
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def unshared_limits(settings: Settings, config: GatewayConfig) -> str | None:
    """Several workers each counting limits and budgets alone would let every key spend that many times
    its share: with limits configured, they must share Redis."""
    if settings.workers == 1 or settings.redis_url or config.limits.redis_url:
        return None
    auth = config.auth
    limited = [key.name for key in auth.keys if key.rate_limits is not None or key.budgets is not None]
    if auth.rate_limits == RateLimits() and auth.budgets == Budgets() and not limited:
        return None
    return (
        f"WORKERS={settings.workers} with rate limits or budgets configured needs a shared store: each "
        f"worker would count them alone, so every key could spend {settings.workers} times its limit. Set "
        "REDIS_URL (or limits.redis_url), or run one worker."
    )


def _serve(settings: Settings, config: GatewayConfig) -> None:
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(settings.log_level),
        access_log=False,
        workers=settings.workers,
        # Streams end themselves, with an error event, when the gateway's grace period is over.
        timeout_graceful_shutdown=int(config.reliability.shutdown_grace_seconds) + 5,
        ws_ping_interval=20.0,  # keeps idle WebSocket chats alive through proxies
        ws_ping_timeout=20.0,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    sys.exit(main())
