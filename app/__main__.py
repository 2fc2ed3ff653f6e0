"""``python -m app``: start the gateway with uvicorn, honouring HOST, PORT, LOG_LEVEL, GATEWAY_CONFIG and WORKERS."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import uvicorn

from app.config import ConfigError, GatewayConfig, load_config
from app.ops.logs import uvicorn_log_config
from app.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
        config = load_config(settings.config_path)  # fail before uvicorn starts, with a message
    except (SettingsError, ConfigError) as exc:
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
