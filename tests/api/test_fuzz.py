"""Random bodies and headers at every protected endpoint: never a 5xx, and never a change of
state without a valid signature (a refused request changes nothing at all; only a correctly
signed, valid request may be accepted)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import text

from telepay.security import nowpayments, signing
from tests.api.conftest import IPN_SECRET, SIGNING_SECRET, make_app

# Hundreds of random requests per endpoint (with the `ci` profile).
pytestmark = pytest.mark.slow


# A run of refused IPNs raises its alert on purpose (`ipn-refusals:<window>`); nothing else may change.
STATE = text("""
    SELECT (SELECT count(*) FROM jobs WHERE dedupe_key IS NULL OR dedupe_key NOT LIKE 'ipn-refusals:%'),
           (SELECT count(*) FROM payments), (SELECT count(*) FROM payment_events),
           (SELECT count(*) FROM accepted_signatures),
           (SELECT count(last_broadcast_requested_at) FROM channels)
""")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)


@st.composite
def bodies(draw, channel_id: int, order_id: str):
    kind = draw(st.sampled_from(["bytes", "json", "shaped"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    shaped = {
        "channel_id": draw(st.sampled_from([channel_id, 0, -1, 99999, "1", None, 1.5])),
        "text": draw(st.text(max_size=50)),
        "payment_id": draw(st.one_of(st.integers(0, 10**12), st.text(max_size=20), st.none())),
        "payment_status": draw(st.sampled_from(["waiting", "finished", "bogus", ""])),
        "order_id": draw(st.sampled_from([order_id, "", "nope"])),
        "actually_paid": draw(st.one_of(st.floats(allow_nan=False), st.text(max_size=8))),
    }
    keep = draw(st.sets(st.sampled_from(sorted(shaped)), max_size=len(shaped)))
    return json.dumps({k: shaped[k] for k in keep}).encode()


@st.composite
def headers_for(draw, body: bytes, method="POST", path="/webhooks/notification"):
    headers = {}
    content_type = draw(st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8"]))
    if content_type:
        headers["Content-Type"] = content_type
    now = int(time.time())
    choice = draw(st.sampled_from(["none", "garbage", "wrong-secret", "stale", "ipn-wrong", "ipn-garbage",
                                   "valid", "ipn-valid"]))
    ts = draw(st.sampled_from([now, now - 400, now + 400, 0]))
    if choice == "garbage":
        headers[signing.TIMESTAMP_HEADER] = draw(st.text(alphabet="0123456789abc -+", max_size=16))
        headers[signing.SIGNATURE_HEADER] = draw(st.text(alphabet="0123456789abcdefXYZ", max_size=70))
    elif choice == "wrong-secret":
        headers[signing.TIMESTAMP_HEADER] = str(ts)
        headers[signing.SIGNATURE_HEADER] = signing.sign("not-the-secret", body, ts, method=method, path=path)
    elif choice == "stale":
        old = now - draw(st.integers(310, 10**6))
        headers[signing.TIMESTAMP_HEADER] = str(old)
        headers[signing.SIGNATURE_HEADER] = signing.sign(SIGNING_SECRET, body, old, method=method, path=path)
    elif choice == "ipn-wrong":
        try:
            headers[nowpayments.SIGNATURE_HEADER] = nowpayments.nowpayments_signature("not-the-secret", body)
        except Exception:  # noqa: BLE001 - not JSON: send a plausible-looking digest instead
            headers[nowpayments.SIGNATURE_HEADER] = "ab" * 64
    elif choice == "valid":
        # A fresh timestamp per example, so two equal bodies are not refused as replays.
        ts = now + draw(st.integers(-250, 250))
        headers[signing.TIMESTAMP_HEADER] = str(ts)
        headers[signing.SIGNATURE_HEADER] = signing.sign(SIGNING_SECRET, body, ts, method=method, path=path)
    elif choice == "ipn-valid":
        try:
            headers[nowpayments.SIGNATURE_HEADER] = nowpayments.nowpayments_signature(IPN_SECRET, body)
        except Exception:  # noqa: BLE001 - not JSON: nothing valid to sign
            pass
    elif choice == "ipn-garbage":
        headers[nowpayments.SIGNATURE_HEADER] = draw(st.text(alphabet="0123456789abcdef", max_size=130))
    return headers, choice in ("valid", "ipn-valid")


@pytest.mark.parametrize("method,path", [
    ("POST", "/webhooks/notification"),
    ("POST", "/webhooks/broadcast-trigger"),
    ("POST", "/webhooks/nowpayments"),
    ("GET", "/status"),
])
def test_random_requests_never_5xx_and_never_change_state_unsigned(engine, channel, invoice, method, path):
    app = make_app(engine, NOWPAYMENTS_IPN_IPS="any")
    client = app.test_client()

    def state():
        with engine.connect() as connection:
            return tuple(connection.execute(STATE).one())

    @settings(deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def check(data):
        body = data.draw(bodies(channel.id, invoice.id))
        headers, signed = data.draw(headers_for(body, method, path))
        before = state()
        response = client.open(path, method=method, data=body, headers=headers)
        assert response.status_code < 500, (response.status_code, response.get_data(as_text=True))
        assert response.is_json and "error" in response.json or response.status_code < 300
        if not signed:
            assert response.status_code >= 400, (headers, body)
        if response.status_code >= 400:
            # Refused: whatever the signature, nothing may have changed.
            assert state() == before, (headers, body)

    check()
