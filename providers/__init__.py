"""The upstream side: canonical events, the provider protocol, the router and one module per vendor.

Nothing here imports from ``app``; the HTTP side depends on this package, never the reverse. The
machinery the vendors share is private (``_http``, ``_sse``, ``_lines``, ``_translate``); what the
HTTP side may use of it is exported here.
"""

from providers._http import TRANSPORTS, make_client
from providers._proxy import Proxies, ProxyConfigError

__all__ = ["TRANSPORTS", "Proxies", "ProxyConfigError", "make_client"]
