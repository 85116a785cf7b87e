"""Response headers every API answer carries.

Owns the header set and `SecurityHeaders`, the WSGI middleware the app factory wraps the app in,
so every answer carries them: views, error handlers and Werkzeug's own refusals alike. The API
serves only JSON to machines, so everything a browser could do with a response is shut off: no
sniffing it into HTML, no framing, no loading of anything, no caching of webhook answers
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


_PAIRS = [(name, value) for name, value in SECURITY_HEADERS.items()]
_NAMES = frozenset(name.lower() for name in SECURITY_HEADERS)


class SecurityHeaders:
    """WSGI middleware: sets `SECURITY_HEADERS` on every response, replacing any the app set.

    At this layer it is a list operation on the header tuples; through Flask's `Headers` in an
    `after_request` it cost more than the rest of a bare endpoint's response.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            headers[:] = [h for h in headers if h[0].lower() not in _NAMES]
            headers.extend(_PAIRS)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
