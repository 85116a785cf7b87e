"""IP allowlist, client IP behind proxies, and rate limits, through the real app."""

from __future__ import annotations

import itertools
import json

import httpx

from telepay.api.server import ApiServer

from tests.api.conftest import ipn_body, make_app, post_ipn, signed_headers, snapshot

NOTIFY = "/webhooks/notification"


_sent = itertools.count()


def _notify(client, channel, ip, forwarded=None):
    # A distinct text each time: identical requests signed in the same second are replays.
    body = json.dumps({"channel_id": channel.id, "text": f"message {next(_sent)}"}).encode()
    headers = signed_headers(body)
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return client.post(NOTIFY, data=body, headers=headers, environ_base={"REMOTE_ADDR": ip})


def test_ip_not_allowed(engine, session_factory, channel):
    client = make_app(engine, ALLOWED_IPS="10.0.0.0/8").test_client()
    before = snapshot(engine)
    response = _notify(client, channel, "203.0.113.5")
    assert response.status_code == 403 and response.json["error"] == "ip_not_allowed"
    assert snapshot(engine) == before
    assert _notify(client, channel, "10.1.2.3").status_code == 202


def test_spoofed_forwarded_for_is_ignored_without_a_trusted_proxy(engine, session_factory, channel):
    client = make_app(engine, ALLOWED_IPS="10.0.0.0/8", TRUSTED_PROXIES="127.0.0.1").test_client()
    # The peer is not a proxy we trust, so its X-Forwarded-For is the client's own claim.
    response = _notify(client, channel, "203.0.113.5", forwarded="10.0.0.1")
    assert response.status_code == 403


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_counts(engine, session_factory, channel):
    client = make_app(engine, ALLOWED_IPS="10.0.0.0/8", TRUSTED_PROXIES="127.0.0.1").test_client()
    # Caddy appends the address it saw; anything to its left is the client's to invent.
    assert _notify(client, channel, "127.0.0.1", forwarded="10.0.0.1, 203.0.113.9").status_code == 403
    assert _notify(client, channel, "127.0.0.1", forwarded="203.0.113.9, 10.0.0.7").status_code == 202


def test_rate_limit_answers_429_with_retry_after(engine, session_factory, channel):
    client = make_app(engine, RATE_LIMIT_PER_MINUTE="10", RATE_LIMIT_BURST="3").test_client()
    answers = [_notify(client, channel, "198.51.100.7").status_code for _ in range(3)]
    assert answers == [202, 202, 202]
    before = snapshot(engine)
    limited = _notify(client, channel, "198.51.100.7")
    assert limited.status_code == 429 and limited.json["error"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    assert snapshot(engine) == before
    # Another client has its own budget.
    assert _notify(client, channel, "198.51.100.8").status_code == 202


def test_finding_9_rotating_ipv6_addresses_inside_one_64_share_one_budget(engine, session_factory, channel):
    """The attack: 60 requests, each from a new address in one /64. Now the /64 is one client."""
    client = make_app(engine, RATE_LIMIT_PER_MINUTE="10", RATE_LIMIT_BURST="3").test_client()
    answers = [_notify(client, channel, f"2001:db8:1:2::{n:x}").status_code for n in range(1, 61)]
    assert answers[:3] == [202, 202, 202]
    assert answers[3:] == [429] * 57
    # Another /64 is another client; and the prefix is a setting.
    assert _notify(client, channel, "2001:db8:1:3::1").status_code == 202
    wide = make_app(engine, RATE_LIMIT_PER_MINUTE="10", RATE_LIMIT_BURST="1", RATE_LIMIT_IPV6_PREFIX="48").test_client()
    assert _notify(wide, channel, "2001:db8:1:4::1").status_code == 202
    assert _notify(wide, channel, "2001:db8:1:5::1").status_code == 429


def test_the_payment_provider_is_never_throttled(engine, session_factory, invoice):
    client = make_app(engine, RATE_LIMIT_PER_MINUTE="1", RATE_LIMIT_BURST="1").test_client()
    statuses = ["waiting", "confirming", "confirmed", "sending", "finished"]
    for n in range(40):
        status = statuses[n % len(statuses)]
        response = post_ipn(client, ipn_body(invoice.id, payment_id=7000 + n, status=status))
        assert response.status_code == 200, response.json
    # Someone else on the same route is limited as usual.
    first = post_ipn(client, ipn_body(invoice.id, payment_id=9001), ip="203.0.113.50")
    assert first.status_code == 403  # not NOWPayments: refused by the allowlist after the limiter
    assert post_ipn(client, ipn_body(invoice.id, payment_id=9002), ip="203.0.113.50").status_code == 429


def test_ipn_from_an_address_outside_the_allowlist(engine, session_factory, invoice):
    client = make_app(engine).test_client()
    before = snapshot(engine)
    response = post_ipn(client, ipn_body(invoice.id), ip="203.0.113.9")
    assert response.status_code == 403
    assert snapshot(engine) == before


def test_ipn_allowlist_can_be_switched_off(engine, session_factory, invoice):
    client = make_app(engine, NOWPAYMENTS_IPN_IPS="any").test_client()
    assert post_ipn(client, ipn_body(invoice.id), ip="203.0.113.9").status_code == 200


def test_status_needs_the_operator_token_or_a_signature(engine, session_factory, invoice):
    client = make_app(engine).test_client()
    assert client.get("/status").status_code == 401
    assert client.get("/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    post_ipn(client, ipn_body(invoice.id))
    ok = client.get("/status", headers={"Authorization": "Bearer test-operator-token"})
    assert ok.status_code == 200
    body = ok.json
    assert body["checks"]["database"]["data"]["ping_ms"] >= 0 and body["status"] in ("ok", "degraded")
    assert body["jobs"] == {"payment.process": {"queued": 1}}
    assert body["checks"]["dead_jobs"]["data"]["count"] == 0 and body["version"]
    assert set(body["pool"]) == {"size", "checked_out", "overflow", "checked_in"}
    signed = client.get("/status", headers=signed_headers(b"", method="GET", path="/status"))
    assert signed.status_code == 200


def test_health_needs_nothing(client):
    assert client.get("/health").json == {"status": "ok"}


def test_repeated_forwarded_for_headers_over_real_http_count_as_one_list(engine, session_factory, channel):
    """Waitress joins repeated headers with commas, so a client's own X-Forwarded-For line sent
    before the proxy's cannot hide the address the proxy appended."""
    app = make_app(engine, ALLOWED_IPS="10.0.0.0/8", TRUSTED_PROXIES="127.0.0.1")
    server = ApiServer(app, "127.0.0.1", 0, threads=2)
    server.start()
    try:
        def notify(*forwarded):
            body = json.dumps({"channel_id": channel.id, "text": f"message {next(_sent)}"}).encode()
            headers = [*signed_headers(body).items(), *(("X-Forwarded-For", hop) for hop in forwarded)]
            return httpx.post(f"http://127.0.0.1:{server.port}{NOTIFY}", content=body, headers=headers)

        assert notify("10.0.0.1", "203.0.113.9").status_code == 403  # the right-most line is the proxy's
        assert notify("203.0.113.9", "10.0.0.7").status_code == 202
    finally:
        server.stop()
