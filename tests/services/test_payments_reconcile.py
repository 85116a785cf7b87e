"""Lost IPNs recovered from NOWPayments' payments list: a paid invoice whose every IPN our
endpoint refused (a rotated IPN secret) until NOWPayments gave up is found and completed, by the
timer's reconciliation and by `telepay payments reconcile`, under either authentication the
list may want."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from telepay.api.server import ApiServer
from telepay.cli import main
from telepay.clients.nowpayments import NowPaymentsClient
from telepay.models import Invoice, InvoiceStatus, Job, PaymentStatus, Subscription
from telepay.services.messages import ALERT_JOB
from telepay.services.payments.reconcile import Reconciler
from telepay_sandbox.nowpayments import Delivery, NowPaymentsSandbox
from tests.api.conftest import make_app, refusals
from tests.services.payments_rig import BUYER, _invoice

KEY = "test-nowpayments-key"  # the API key tests.api.conftest's app is configured with
ROTATED = "the-secret-before-it-was-rotated"  # NOWPayments signs with it; we no longer accept it


@pytest.fixture
def endpoint(engine, session_factory):
    """Our IPN endpoint over real HTTP, allowlist off: only the signature can refuse."""
    server = ApiServer(make_app(engine, NOWPAYMENTS_IPN_IPS="any"), "127.0.0.1", 0, threads=4)
    server.start()
    yield f"http://127.0.0.1:{server.port}/webhooks/nowpayments"
    server.stop()


def _sandbox(**options) -> NowPaymentsSandbox:
    return NowPaymentsSandbox(KEY, ROTATED, delivery=Delivery(retries=2, retry_delay=0.01), **options)


def _paid_but_every_ipn_refused(session_factory, clock, sandbox, channel, endpoint) -> str:  # noqa: F811
    invoice_id = _invoice(session_factory, channel, now=clock.now())
    with NowPaymentsClient(sandbox.base_url, KEY) as client:
        provider_id = client.create_invoice(price_amount=Decimal("10.00"), order_id=invoice_id,
                                            order_description="VIP", ipn_callback_url=endpoint,
                                            success_url="https://t.me/x", cancel_url="https://t.me/x").id
    with session_factory.begin() as session:
        session.execute(update(Invoice).where(Invoice.id == invoice_id).values(provider_invoice_id=provider_id))
    payment_id = sandbox.pay(provider_id)
    # Every status was refused three times, then NOWPayments gave up on it.
    assert [status for _, status in sandbox.given_up] == ["waiting", "confirming", "confirmed", "sending",
                                                          "finished"]
    assert {record.status_code for record in sandbox.ipns_for(payment_id)} == {401}
    return invoice_id, payment_id


def _completed(session_factory, invoice_id) -> bool:
    with session_factory() as session:
        return (session.get(Invoice, invoice_id).status == InvoiceStatus.COMPLETED
                and session.scalars(select(Subscription.user_id)).all() == [BUYER])


def _operator_notes(session_factory):
    with session_factory() as session:
        return [job.payload["text"] for job in session.scalars(select(Job).where(Job.kind == ALERT_JOB))]


def test_the_reconciliation_timer_recovers_a_paid_invoice_whose_every_ipn_was_refused(
        engine, session_factory, clock, processor, channel, endpoint):  # noqa: F811
    with _sandbox() as sandbox:
        invoice_id, payment_id = _paid_but_every_ipn_refused(session_factory, clock, sandbox, channel, endpoint)
        assert len(refusals(engine)) == 15 and {reason for reason, _ in refusals(engine)} == {"signature"}
        client = NowPaymentsClient(sandbox.base_url, KEY, retries=0)
        reconciler = Reconciler(session_factory, client, jobs=processor.jobs, clock=clock, after_minutes=30)
        assert reconciler.run_once() == []  # opened too recently to suspect anything
        assert not [call for call in sandbox.calls if call.path == "/v1/payment/"]
        clock.advance(timedelta(minutes=31))
        [found] = reconciler.run_once()
        assert (found.payment_id, found.invoice_id, found.status) == (str(payment_id), invoice_id, "finished")
        assert processor.process(found.payment_id) == PaymentStatus.FINISHED
        assert reconciler.run_once() == []  # known now: recovered once
        client.close()
    assert _completed(session_factory, invoice_id)
    notes = _operator_notes(session_factory)
    assert any("NOWPayments IPNs refused" in note for note in notes)  # the run was alerted as it happened
    [recovered] = [note for note in notes if "recovered" in note]
    assert f"Payment {payment_id}" in recovered


def test_telepay_payments_reconcile_recovers_it_by_hand_with_the_jwt_the_list_may_want(
        database_url, session_factory, clock, processor, channel, endpoint, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)  # no developer .env
    with _sandbox(list_auth="jwt") as sandbox:
        sandbox.add_account("ops@example.test", "dashboard-password")
        invoice_id, payment_id = _paid_but_every_ipn_refused(session_factory, clock, sandbox, channel, endpoint)
        env = {"DATABASE_URL": database_url, "NOWPAYMENTS_API_KEY": KEY, "NOWPAYMENTS_BASE_URL": sandbox.base_url,
               "ADMIN_CHAT_IDS": "900001"}
        without_login = CliRunner(env=env).invoke(main, ["payments", "reconcile", "--since", "1h"])
        assert without_login.exit_code == 1 and "AUTH_REQUIRED" in without_login.output
        runner = CliRunner(env={**env, "NOWPAYMENTS_EMAIL": "ops@example.test",
                                "NOWPAYMENTS_PASSWORD": "dashboard-password"})
        result = runner.invoke(main, ["payments", "reconcile", "--since", "1h"])
        assert result.exit_code == 0, result.output
        assert f"recovered payment {payment_id}: finished (invoice {invoice_id})" in result.output
        again = runner.invoke(main, ["payments", "reconcile", "--since", "1h"])
        assert again.exit_code == 0 and "0 payment status(es) recovered" in again.output
        assert [call.status for call in sandbox.calls if call.path == "/v1/auth"] == [200, 200]
    processor.process(str(payment_id))
    assert _completed(session_factory, invoice_id)
    assert len([note for note in _operator_notes(session_factory) if "recovered" in note]) == 1


def test_a_bad_since_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner(env={"NOWPAYMENTS_API_KEY": KEY}).invoke(main, ["payments", "reconcile", "--since", "soon"])
    assert result.exit_code == 2 and "--since" in result.output
