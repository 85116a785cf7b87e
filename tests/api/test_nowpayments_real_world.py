"""The IPN endpoint against NOWPayments as documented: its one documented example (a
re-deposit), statuses we don't know, one poisoned IPN in a batch, and refusals that are logged,
counted and alerted."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from telepay.api.state import api_state
from telepay.api.nowpayments import ipn_recorder
from telepay.api.schemas import IpnIn
from telepay.models import Job, Payment, PaymentEvent, RefusedIpn
from telepay.services.ipn import IpnDelivery
from telepay.services.payments.refusals import refused_ipns_since
from tests.api.conftest import ipn_body, make_app, post_ipn, refusals, snapshot

DOCUMENTED = Path(__file__).parents[1] / "data" / "nowpayments" / "ipn_redeposit_documented.json"


def test_the_documented_redeposit_is_accepted_and_linked_through_its_parent(client, invoice, session_factory):
    assert post_ipn(client, ipn_body(invoice.id, payment_id=987654321, status="partially_paid")).status_code == 200
    body = DOCUMENTED.read_bytes()  # exactly as documented: order_id and invoice_id null
    response = post_ipn(client, body)
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    with session_factory() as session:
        child = session.scalars(select(Payment).where(Payment.provider_payment_id == "123456789")).one()
        event = session.scalars(select(PaymentEvent).where(PaymentEvent.provider_payment_id == "123456789")).one()
        job = session.scalars(select(Job).where(Job.dedupe_key == "123456789:finished")).one()
    assert child.invoice_id == invoice.id and child.parent_payment_id == "987654321"
    assert event.raw_body == body.decode() and job.kind == "payment.process"


def test_a_redeposit_whose_parent_we_never_heard_of_is_refused_and_counted(client, invoice, engine):
    before = snapshot(engine)
    response = post_ipn(client, DOCUMENTED.read_bytes())
    assert response.status_code == 404 and response.json["error"] == "unknown_order"
    assert snapshot(engine) == before and refusals(engine) == [("order", "51.89.194.21")]


def test_a_status_we_do_not_know_gets_200_and_is_stored(client, invoice, session_factory):
    response = post_ipn(client, ipn_body(invoice.id, status="cancelled"))
    assert response.status_code == 200 and response.json == {"status": "accepted"}
    with session_factory() as session:
        assert session.scalars(select(PaymentEvent.status)).all() == ["cancelled"]
        assert session.scalars(select(Job.dedupe_key)).all() == ["5077125051:cancelled"]


def test_one_poisoned_ipn_never_fails_the_six_good_ones_in_its_batch(engine, session_factory, invoice):
    """Issue 13 finding 6: a currency code longer than its column failed the whole group-commit
    batch, and six genuine IPNs got 500. The schema now refuses it first (see the schema
    violations); here it is forced past the schema, as before the fix, straight into a batch."""
    app = make_app(engine)
    recorder = ipn_recorder(api_state(app).services)
    recorder._max_leaders = 1  # every IPN queued behind the first joins one batch
    deliveries = []
    for n in range(7):
        body = {"payment_id": 6000 + n, "payment_status": "finished", "order_id": invoice.id,
                "pay_currency": "x" * 100 if n == 3 else "eth"}
        ipn = IpnIn.model_validate({**body, "pay_currency": "eth"})
        if n == 3:
            ipn = ipn.model_copy(update={"pay_currency": "x" * 100})
        deliveries.append(IpnDelivery(ipn, body, str(body)))
    blocker = threading.Lock()
    blocker.acquire()
    original = recorder._commit

    def commit(connection, batch):
        with blocker:  # the first batch waits until every other IPN has queued behind it
            pass
        return original(connection, batch)

    recorder._commit = commit
    answers: dict[int, object] = {}

    def deliver(n):
        try:
            answers[n] = recorder.submit(deliveries[n])
        except Exception as failure:  # noqa: BLE001 - the answer under test
            answers[n] = failure

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(7)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(recorder._queue) < 6:
        assert time.monotonic() < deadline, "the IPNs never queued"
        time.sleep(0.001)
    blocker.release()
    for thread in threads:
        thread.join(30)
    recorder.close_idle()
    assert {n: answers[n] for n in range(7) if n != 3} == {n: "accepted" for n in range(7) if n != 3}
    assert isinstance(answers[3], Exception)
    with session_factory() as session:
        stored = sorted(session.scalars(select(Payment.provider_payment_id)))
    assert stored == [str(6000 + n) for n in range(7) if n != 3]


def test_refusals_are_logged_with_their_reason_counted_and_a_run_raises_the_alert(engine, invoice, caplog):
    app = make_app(engine, IPN_REFUSAL_ALERT_COUNT="4", IPN_REFUSAL_ALERT_MINUTES="10", ADMIN_CHAT_IDS="4242",
                   RATE_LIMIT_BURST="100")
    client = app.test_client()
    body = ipn_body(invoice.id)
    with caplog.at_level(logging.WARNING, logger="telepay.services.payments.refusals"):
        assert post_ipn(client, body, ip="203.0.113.9").status_code == 403
        assert post_ipn(client, body, secret="an-old-secret").status_code == 401
        assert post_ipn(client, ipn_body(invoice.id, pay_currency="x" * 40)).status_code == 422
        assert post_ipn(client, ipn_body("no-such-order")).status_code == 404
    lines = [(r.reason, r.client_ip) for r in caplog.records if r.getMessage().startswith("IPN refused")]
    assert lines == [("address", "203.0.113.9"), ("signature", "51.89.194.21"), ("schema", "51.89.194.21"),
                     ("order", "51.89.194.21")]
    services = api_state(app).services
    with services.session_factory() as session:
        since = services.clock.now() - timedelta(minutes=1)
        assert refused_ipns_since(session, since) == {"address": 1, "signature": 1, "schema": 1, "order": 1}
        alerts = session.scalars(select(Job).where(Job.kind == "operator.alert")).all()
    assert len(alerts) == 1 and "4 NOWPayments IPNs refused" in alerts[0].payload["text"]
    assert post_ipn(client, body, ip="203.0.113.9").status_code == 403  # the same window: no second alert
    with services.session_factory() as session:
        assert len(session.scalars(select(Job).where(Job.kind == "operator.alert")).all()) == 1


def test_an_oversized_body_is_a_counted_refusal(engine, client, invoice):
    response = post_ipn(client, b'{"pad": "' + b"x" * 70_000 + b'"}')
    assert response.status_code == 413 and refusals(engine) == [("signature", "51.89.194.21")]


def test_refusals_are_kept_thirty_days(engine, client, invoice, session_factory):
    services = api_state(client.application).services
    with session_factory.begin() as session:
        session.add(RefusedIpn(refused_at=services.clock.now() - timedelta(days=31), client_ip="192.0.2.1",
                               reason="signature", detail="old"))
        session.add(RefusedIpn(refused_at=services.clock.now() - timedelta(days=29), client_ip="192.0.2.2",
                               reason="signature", detail="recent"))
    assert post_ipn(client, ipn_body(invoice.id), ip="203.0.113.9").status_code == 403
    assert refusals(engine) == [("signature", "192.0.2.2"), ("address", "203.0.113.9")]


def test_with_the_allowlist_off_signed_ipns_are_never_throttled_and_forgers_are(engine, invoice):
    client = make_app(engine, NOWPAYMENTS_IPN_IPS="any", RATE_LIMIT_PER_MINUTE="1",
                      RATE_LIMIT_BURST="3").test_client()
    statuses = ["waiting", "confirming", "confirmed", "sending", "finished"]
    for n in range(40):  # the issue: the 21st IPN from one address got 429
        response = post_ipn(client, ipn_body(invoice.id, payment_id=7000 + n, status=statuses[n % 5]),
                            ip="198.51.100.20")
        assert response.status_code == 200, (n, response.json)
    forged = ipn_body(invoice.id, payment_id=9001)
    answers = [post_ipn(client, forged, secret="guess", ip="203.0.113.66").status_code for _ in range(5)]
    assert answers == [401, 401, 401, 429, 429]
    # The forger's budget is its own: NOWPayments' address is still served.
    assert post_ipn(client, ipn_body(invoice.id, payment_id=7100), ip="198.51.100.20").status_code == 200
