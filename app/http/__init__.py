"""ASGI and Starlette plumbing, nothing about chat: routes from the spec, bodies, access log, keys, status."""
