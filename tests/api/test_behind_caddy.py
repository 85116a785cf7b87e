"""The deployed chain: a caller -> Caddy (the project's Caddyfile) -> waitress -> the app.

The caller connects from its own loopback address (127.0.0.2 or .3; all of 127/8 is loopback),
so the app can only tell the two apart through the X-Forwarded-For that Caddy writes.
"""

from __future__ import annotations

import httpx

from telepay.api.server import ApiServer
from telepay.security import nowpayments
from tests.api.conftest import IPN_SECRET, ipn_body, make_app, snapshot
from tests.test_ops_files import needs_caddy, running_caddy


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


@needs_caddy
def test_nowpayments_is_recognised_through_caddy_and_others_are_not(engine, invoice, tmp_path):
    app = make_app(engine, TRUSTED_PROXIES="127.0.0.1", NOWPAYMENTS_IPN_IPS="127.0.0.2",
                   RATE_LIMIT_PER_MINUTE="1", RATE_LIMIT_BURST="1")
    server = ApiServer(app, "127.0.0.1", 0, threads=2)
    server.start()
    try:
        with running_caddy(tmp_path, server.port) as (port, _log):
            url = f"http://127.0.0.1:{port}/webhooks/nowpayments"

            def deliver(source: str, status: str, forged: str | None = None) -> httpx.Response:
                body = ipn_body(invoice.id, status=status)
                headers = {"Content-Type": "application/json",
                           nowpayments.SIGNATURE_HEADER: nowpayments.nowpayments_signature(IPN_SECRET, body)}
                if forged:
                    headers["X-Forwarded-For"] = forged
                with _from(source) as client:
                    return client.post(url, content=body, headers=headers)

            # NOWPayments' address, as Caddy reports it: accepted, and never rate limited.
            for status in ("waiting", "confirming", "finished"):
                answer = deliver("127.0.0.2", status)
                assert answer.status_code == 200 and answer.json()["status"] == "accepted"
            before = snapshot(engine)
            # Anyone else is refused, even when claiming to be NOWPayments.
            assert deliver("127.0.0.3", "sending", forged="127.0.0.2").status_code == 403
            assert deliver("127.0.0.3", "sending").status_code == 429  # its own budget is spent
            assert snapshot(engine) == before
    finally:
        server.stop()
