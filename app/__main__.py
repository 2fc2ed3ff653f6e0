"""``python -m app``: start the gateway with uvicorn, honouring HOST, PORT, LOG_LEVEL, GATEWAY_CONFIG and WORKERS."""

from __future__ import annotations

import os
import sys
import tempfile

import uvicorn

from app.config import ConfigError, load_config
from app.logs import uvicorn_log_config
from app.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
        if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Set before the workers start, so each counts into files that /metrics adds up.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
        config = load_config(settings.config_path)  # fail before uvicorn starts, with a message
    except (SettingsError, ConfigError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
