"""The upstream side: canonical events, the provider protocol, the router and one module per vendor.

Nothing here imports from ``app``; the HTTP side depends on this package, never the reverse.
"""
