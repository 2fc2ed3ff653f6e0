"""Conversations kept by the gateway: the store, the history window, turns and their routes."""
