"""The HTTP side of the gateway: routes bound from openapi.yaml, middleware, encoders, errors."""

__version__ = "0.1.0"
