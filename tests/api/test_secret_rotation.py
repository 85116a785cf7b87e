"""Rotating the IPN secret and the webhook signing secret: during the window both the new and
the previous value are accepted (`*_PREVIOUS`); anything else is still refused; after the
window (previous unset) only the new one works."""

from __future__ import annotations

import time

from tests.api.conftest import IPN_SECRET, SIGNING_SECRET, ipn_body, make_app, post_ipn, signed_headers

NEW_SIGNING, NEW_IPN = "rotated-webhook-secret", "rotated-ipn-secret"
OPERATOR_FREE_STATUS = {"method": "GET", "path": "/status"}


_seconds_ago = iter(range(1, 100))


def status_with(client, secret):
    # A fresh timestamp each time: the same signature twice would be refused as a replay.
    ts = int(time.time()) - next(_seconds_ago)
    return client.get("/status", headers=signed_headers(b"", secret, ts, **OPERATOR_FREE_STATUS)).status_code


def test_the_signing_secret_accepts_old_and_new_during_a_rotation(engine, session_factory):
    rotating = make_app(engine, WEBHOOK_SIGNING_SECRET=NEW_SIGNING,
                        WEBHOOK_SIGNING_SECRET_PREVIOUS=SIGNING_SECRET).test_client()
    assert status_with(rotating, NEW_SIGNING) == 200
    assert status_with(rotating, SIGNING_SECRET) == 200
    assert status_with(rotating, "a-third-secret") == 401
    done = make_app(engine, WEBHOOK_SIGNING_SECRET=NEW_SIGNING).test_client()
    assert status_with(done, NEW_SIGNING) == 200 and status_with(done, SIGNING_SECRET) == 401


def test_the_ipn_secret_accepts_old_and_new_during_a_rotation(engine, session_factory, invoice):
    rotating = make_app(engine, NOWPAYMENTS_IPN_SECRET=NEW_IPN, NOWPAYMENTS_IPN_SECRET_PREVIOUS=IPN_SECRET)
    client = rotating.test_client()
    assert post_ipn(client, ipn_body(invoice.id, payment_id=1, status="waiting"), secret=NEW_IPN).status_code == 200
    assert post_ipn(client, ipn_body(invoice.id, payment_id=1, status="confirming"),
                    secret=IPN_SECRET).status_code == 200
    assert post_ipn(client, ipn_body(invoice.id, payment_id=1, status="finished"),
                    secret="forged").status_code == 401
    done = make_app(engine, NOWPAYMENTS_IPN_SECRET=NEW_IPN).test_client()
    assert post_ipn(done, ipn_body(invoice.id, payment_id=1, status="finished"), secret=IPN_SECRET).status_code == 401
