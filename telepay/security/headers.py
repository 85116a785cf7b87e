"""Response headers every API answer carries.

Owns the header set, not how it is applied (the app factory adds it in an ``after_request``).
The API serves only JSON to machines, so everything a browser could do with a response is shut
off: no sniffing it into HTML, no framing, no loading of anything, no caching of webhook answers
(they can carry payment state), no referrer leaking our URLs, and HTTPS pinned via HSTS since
Caddy terminates TLS in front of us.
"""

from types import MappingProxyType

SECURITY_HEADERS = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        "Cache-Control": "no-store",
        # Two years, the usual recommendation. No "preload": that is a commitment for the whole
        # domain which only its operator can make.
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    }
)
