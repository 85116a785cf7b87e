"""The NOWPayments IPN endpoint: store, dedupe, queue; refuse what is not theirs."""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select, text

from telepay.api.state import api_state
from telepay.api.server import ApiServer
from telepay.models import Job, Payment, PaymentEvent
from telepay.security import nowpayments
from tests.api.conftest import IPN_SECRET, ipn_body, make_app, post_ipn, raw_json, snapshot


def test_an_ipn_is_stored_and_queued(client, invoice, session_factory):
    body = ipn_body(invoice.id, status="confirming")
    response = post_ipn(client, body)
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    with session_factory() as session:
        [payment] = session.scalars(select(Payment)).all()
        [event] = session.scalars(select(PaymentEvent)).all()
        [job] = session.scalars(select(Job)).all()
    assert payment.provider_payment_id == "5077125051" and payment.invoice_id == invoice.id
    assert payment.pay_amount == Decimal("0.00612") and payment.price_amount == Decimal("15.0")
    assert event.raw_body == body.decode() and event.body["fee"]["serviceFee"] == "0.00005"
    assert job.kind == "payment.process" and job.dedupe_key == "5077125051:confirming"


def test_a_repeat_of_the_same_status_adds_nothing(client, invoice, engine):
    body = ipn_body(invoice.id, status="finished")
    assert post_ipn(client, body).json == {"status": "accepted"}
    before = snapshot(engine)
    repeat = post_ipn(client, body)
    assert repeat.status_code == 200 and repeat.json == {"status": "duplicate"}
    assert snapshot(engine) == before


def test_each_new_status_is_a_new_event_for_one_payment(client, invoice, engine):
    for status in ("waiting", "confirming", "finished", "confirming"):
        assert post_ipn(client, ipn_body(invoice.id, status=status)).status_code == 200
    counts = snapshot(engine)
    assert counts["payments"] == 1 and counts["payment_events"] == 3 and counts["jobs"] == 3


def test_unknown_order_is_refused_and_nothing_is_stored(client, invoice, engine):
    before = snapshot(engine)
    response = post_ipn(client, ipn_body("no-such-order"))
    assert response.status_code == 404 and response.json["error"] == "unknown_order"
    assert snapshot(engine) == before


@pytest.mark.parametrize("mutate,status,code", [
    (lambda body, sig: (body, None), 401, "signature_missing"),
    (lambda body, sig: (body, "nothex"), 401, "signature_malformed"),
    (lambda body, sig: (body, nowpayments.nowpayments_signature("wrong-secret", body)), 401, "signature_mismatch"),
    (lambda body, sig: (body.replace(b'"finished"', b'"fini\\u0073hed"'), sig), 200, None),  # same JSON
    (lambda body, sig: (body.replace(b"0.00612", b"0.00613", 1), sig), 401, "signature_mismatch"),
    (lambda body, sig: (b"{not json", nowpayments.nowpayments_signature(IPN_SECRET, b"{}")), 400, "body_malformed"),
])
def test_bad_ipn_signatures(client, invoice, engine, mutate, status, code):
    body = ipn_body(invoice.id)
    good = nowpayments.nowpayments_signature(IPN_SECRET, body)
    new_body, sig = mutate(body, good)
    before = snapshot(engine)
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers[nowpayments.SIGNATURE_HEADER] = sig
    response = client.post("/webhooks/nowpayments", data=new_body, headers=headers,
                           environ_base={"REMOTE_ADDR": "51.89.194.21"})
    assert response.status_code == status, response.json
    if code:
        assert response.json["error"] == code
        assert snapshot(engine) == before


@pytest.mark.parametrize("change", [
    {"payment_status": "x" * 33},  # a status we don't know is taken; one longer than the column is not
    {"pay_currency": "x" * 33},  # issue 13 finding 6: longer than the column, it failed its whole batch
    {"order_id": None},  # neither an order nor a parent payment to link it to
    {"payment_id": None},
    {"payment_id": Decimal("1.5")},
    {"order_id": ""},
    {"actually_paid": "lots"},
    {"actually_paid": Decimal("-1")},
    {"actually_paid": Decimal("1e+20")},  # found by the property test: overflowed the column (500)
    {"price_amount": Decimal("1e12")},
    {"payment_id": Decimal("1e70")},  # 71 digits: wider than the column
    {"parent_payment_id": "x" * 65},
])
def test_ipn_schema_violations(client, invoice, engine, change):
    before = snapshot(engine)
    response = post_ipn(client, ipn_body(**{"order_id": invoice.id, **change}))
    assert response.status_code == 422 and response.json["error"] == "invalid_payload"
    assert snapshot(engine) == before


def test_signature_vectors_verify_through_the_endpoint(client, invoice):
    # Small decimals, exponent notation, whole-number floats and non-ASCII text, signed as
    # NOWPayments signs: HMAC-SHA512 over JSON.stringify of the key-sorted object.
    body = raw_json({"payment_id": 42, "payment_status": "waiting", "order_id": invoice.id,
                     "pay_amount": Decimal("1e-7"), "price_amount": Decimal("15.0"),
                     "fee": {"serviceFee": Decimal("0.00005")}, "order_description": "Café – подписка"})
    assert post_ipn(client, body).status_code == 200


def test_fifty_concurrent_deliveries_make_one_payment_and_one_job(engine, session_factory, invoice):
    app = make_app(engine)
    server = ApiServer(app, "127.0.0.1", 0, threads=16)
    server.start()
    body = ipn_body(invoice.id, status="finished")
    headers = {"Content-Type": "application/json",
               nowpayments.SIGNATURE_HEADER: nowpayments.nowpayments_signature(IPN_SECRET, body)}
    # Delivered over real HTTP from 127.0.0.1, so this app trusts loopback's IPNs.
    api_state(app).guards.ipn_allowlist = __import__(
        "telepay.security.allowlist", fromlist=["IpAllowlist"]).IpAllowlist([])
    barrier = threading.Barrier(50)
    answers = []

    def deliver():
        with httpx.Client() as http:
            barrier.wait()
            answers.append(http.post(f"http://127.0.0.1:{server.port}/webhooks/nowpayments",
                                     content=body, headers=headers, timeout=30).json()["status"])

    threads = [threading.Thread(target=deliver) for _ in range(50)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert sorted(set(answers)) == ["accepted", "duplicate"] and answers.count("accepted") == 1
    counts = snapshot(engine)
    assert counts["payments"] == 1 and counts["payment_events"] == 1 and counts["jobs"] == 1


def _kept_backend(app, engine) -> int:
    [(connection, _)] = api_state(app).ipn_recorder._idle
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    connection.rollback()  # the recorder runs its statement outside any transaction
    return pid


def _terminate(engine, pid: int) -> None:
    with engine.connect() as admin:  # the server drops it, as a restart or an idle timeout would
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_the_recorder_keeps_its_connection_and_replaces_it_when_it_died_idle(engine, invoice):
    app = make_app(engine)
    client = app.test_client()
    assert post_ipn(client, ipn_body(invoice.id, status="waiting")).json["status"] == "accepted"
    pid = _kept_backend(app, engine)
    assert post_ipn(client, ipn_body(invoice.id, status="confirming")).json["status"] == "accepted"
    assert _kept_backend(app, engine) == pid  # the same connection: no checkout, no ping
    _terminate(engine, pid)
    api_state(app).ipn_recorder._recheck_after = 0  # as if it had sat idle for a while
    assert post_ipn(client, ipn_body(invoice.id, status="finished")).json["status"] == "accepted"
    assert _kept_backend(app, engine) != pid
    assert snapshot(engine)["payment_events"] == 3


def test_a_connection_that_died_between_two_ipns_fails_one_answer_and_is_replaced(engine, invoice):
    app = make_app(engine)
    client = app.test_client()
    assert post_ipn(client, ipn_body(invoice.id, status="waiting")).json["status"] == "accepted"
    _terminate(engine, _kept_backend(app, engine))
    failed = post_ipn(client, ipn_body(invoice.id, status="confirming"))
    assert failed.status_code == 500 and failed.json["error"] == "internal_error"  # NOWPayments sends it again
    assert post_ipn(client, ipn_body(invoice.id, status="confirming")).json["status"] == "accepted"
    assert snapshot(engine)["payment_events"] == 2
