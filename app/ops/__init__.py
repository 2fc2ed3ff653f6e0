"""Operating the gateway: logs, metrics, graceful shutdown."""
