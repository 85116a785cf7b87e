"""Lost IPNs: the status query to the NOWPayments sandbox records what the IPNs would have, and
processing takes it from there; quiet payments are asked at most once per interval."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.api.schemas import IpnIn
from telepay.clients.nowpayments import NowPaymentsClient
from telepay.models import Invoice, InvoiceStatus, Payment, PaymentStatus, Subscription
from telepay_sandbox.nowpayments import Delivery, NowPaymentsSandbox
from telepay.services.ipn import record_ipn
from telepay.services.payments.checker import PaymentChecker
from tests.services.payments_rig import _invoice

KEY, SECRET = "checker-key", "checker-secret"
LOST = Delivery(retries=0)  # posted to a closed port: every IPN is lost


@pytest.fixture
def nowpayments():
    with NowPaymentsSandbox(KEY, SECRET) as sandbox:
        yield sandbox


@pytest.fixture
def checker(session_factory, nowpayments, clock):
    client = NowPaymentsClient(nowpayments.base_url, KEY, retries=0)
    yield PaymentChecker(session_factory, client, clock, after_minutes=30)
    client.close()


def _provider_invoice(nowpayments, invoice_id) -> str:
    with NowPaymentsClient(nowpayments.base_url, KEY) as client:
        return client.create_invoice(price_amount=Decimal("10.00"), order_id=invoice_id, order_description="VIP",
                                     ipn_callback_url="http://127.0.0.1:9/webhooks/nowpayments",
                                     success_url="https://t.me/x", cancel_url="https://t.me/x").id


def _heard_waiting(session_factory, clock, nowpayments, payment_id) -> None:
    """Only the first IPN ("waiting") reached us."""
    state = nowpayments.payment(payment_id)
    body = state.fields(for_ipn=True)
    body["payment_status"] = "waiting"
    with session_factory.begin() as session:
        record_ipn(session, IpnIn.model_validate(body), body, str(body), clock.now())


def test_a_payment_whose_ipns_were_lost_is_completed_from_the_status_query(
        session_factory, clock, nowpayments, checker, processor, channel):  # noqa: F811
    invoice_id = _invoice(session_factory, channel, now=clock.now())
    payment_id = nowpayments.pay(_provider_invoice(nowpayments, invoice_id), delivery=LOST)
    _heard_waiting(session_factory, clock, nowpayments, payment_id)
    processor.process(str(payment_id))

    assert checker.run_once() == 0  # too early to suspect anything
    clock.advance(timedelta(minutes=31))
    assert checker.run_once() == 1
    assert processor.process(str(payment_id)) == PaymentStatus.FINISHED
    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.COMPLETED
        assert session.scalars(select(Subscription.user_id)).one() == 555
    asked = [call for call in nowpayments.calls if call.path == f"/v1/payment/{payment_id}"]
    assert len(asked) == 1
    clock.advance(timedelta(hours=1))
    assert checker.run_once() == 0  # completed: never asked again
    assert len([call for call in nowpayments.calls if call.path == f"/v1/payment/{payment_id}"]) == 1


def test_a_quiet_payment_is_asked_once_per_interval_and_provider_failures_wait_too(
        session_factory, clock, nowpayments, checker, processor, channel):  # noqa: F811
    invoice_id = _invoice(session_factory, channel, now=clock.now())
    provider_invoice = _provider_invoice(nowpayments, invoice_id)
    payment_id = nowpayments.pay(provider_invoice, statuses=("waiting",), delivery=LOST)
    _heard_waiting(session_factory, clock, nowpayments, payment_id)
    clock.advance(timedelta(minutes=31))
    nowpayments.fail_next("/v1/payment", status=503)
    assert checker.run_once() == 0
    assert checker.run_once() == 0  # checked just now, even though it failed: not asked again yet
    clock.advance(timedelta(minutes=31))
    assert checker.run_once() == 0  # asked: still waiting, nothing new to record
    asked = [call for call in nowpayments.calls if call.path == f"/v1/payment/{payment_id}"]
    assert [call.status for call in asked] == [503, 200]
    with session_factory() as session:
        payment = session.scalars(select(Payment)).one()
    assert payment.status == PaymentStatus.WAITING and payment.checked_at is not None
