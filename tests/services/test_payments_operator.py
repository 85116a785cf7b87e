"""The operator's payment tools (`telepay payments list|show|resolve`) against the real database:
the service, and the three commands through click's CliRunner."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from telepay.cli import main
from telepay.errors import Conflict, NotFound
from telepay.models import (
    AuditLog, Invite, InviteStatus, Invoice, InvoiceStatus, Job, Payment, PaymentStatus, Payout, PayoutStatus,
    Subscription,
)
from telepay.services.delivery import delivery_queue
from telepay.services.fulfilment import INVITE_JOB, Fulfilment
from telepay.services.payments.operator import Action, list_payments, resolve_payment, show_payment
from tests.services.payments_rig import BUYER, _invoice, _ipn, _jobs

FULL = ("waiting", "confirming", "confirmed", "sending", "finished")


@pytest.fixture
def fulfilment(jobs):
    return Fulfilment(jobs, fee_percent=Decimal(10))


def _pay(session_factory, clock, processor, channel, payment_id, paid="0.004") -> str:
    invoice = _invoice(session_factory, channel)
    for status in FULL:
        _ipn(session_factory, clock, invoice, payment_id, status, paid=paid)
    processor.process(payment_id)
    return invoice


def _payment(session_factory, payment_id) -> Payment:
    with session_factory() as session:
        return session.scalars(select(Payment).where(Payment.provider_payment_id == payment_id)).one()


def _audit(session_factory) -> list[AuditLog]:
    with session_factory() as session:
        return list(session.scalars(select(AuditLog).order_by(AuditLog.id)))


def _resolve(session_factory, fulfilment, clock, ref, action, reason="checked the chain"):
    with session_factory.begin() as session:
        return resolve_payment(session, fulfilment, ref, action, reason, clock.now()).payment.id


def test_list_newest_first_and_review_only(session_factory, clock, processor, channel):
    _pay(session_factory, clock, processor, channel, "5001")
    _pay(session_factory, clock, processor, channel, "5002", paid="0.0039")  # underpaid: review
    with session_factory() as session:
        every = [p.provider_payment_id for p, _ in list_payments(session)]
        review = [p.provider_payment_id for p, _ in list_payments(session, review_only=True)]
        limited = list_payments(session, limit=1)
    assert every == ["5002", "5001"]
    assert review == ["5002"]
    assert len(limited) == 1


def test_show_by_either_id_has_events_subscription_and_review(session_factory, clock, processor, channel):
    invoice = _pay(session_factory, clock, processor, channel, "5101")
    ours = _payment(session_factory, "5101").id
    with session_factory() as session:
        by_provider = show_payment(session, "5101")
        by_ours = show_payment(session, str(ours))
        assert by_ours.payment.id == by_provider.payment.id == ours
        assert by_provider.invoice.id == invoice
        assert [e.status for e in by_provider.events] == list(FULL)
        assert by_provider.subscription is not None and by_provider.subscription.user_id == BUYER
        assert by_provider.payout is not None  # the instant payout its share fed
        with pytest.raises(NotFound):
            show_payment(session, "nope")


def test_fulfil_runs_the_processors_fulfilment_and_audits(session_factory, clock, processor, channel, fulfilment):
    invoice = _pay(session_factory, clock, processor, channel, "5201", paid="0.0039")
    assert _payment(session_factory, "5201").needs_review.startswith("underpaid")
    _resolve(session_factory, fulfilment, clock, "5201", Action.FULFIL)
    payment = _payment(session_factory, "5201")
    assert payment.needs_review is None and payment.fulfilled_at is not None
    assert payment.owner_share_usd is not None  # the share was allocated, as for a finished payment
    with session_factory() as session:
        assert session.get(Invoice, invoice).status == InvoiceStatus.COMPLETED
        assert session.scalars(select(Subscription).where(Subscription.user_id == BUYER)).one()
    assert [job.payload["invoice_id"] for job in _jobs(session_factory, INVITE_JOB)] == [invoice]
    (audit,) = _audit(session_factory)
    assert audit.action == "payment.fulfil" and audit.after["reason"] == "checked the chain"
    assert audit.before["needs_review"].startswith("underpaid") and audit.channel_id == channel.id
    with pytest.raises(Conflict):  # no longer in review
        _resolve(session_factory, fulfilment, clock, "5201", Action.FULFIL)


def test_refunded_grants_nothing_and_dismiss_keeps_state(session_factory, clock, processor, channel, fulfilment):
    refunded = _pay(session_factory, clock, processor, channel, "5301", paid="0.0039")
    dismissed = _pay(session_factory, clock, processor, channel, "5302", paid="0.0039")
    _resolve(session_factory, fulfilment, clock, "5301", Action.REFUNDED)
    _resolve(session_factory, fulfilment, clock, str(_payment(session_factory, "5302").id), Action.DISMISS)
    one, two = _payment(session_factory, "5301"), _payment(session_factory, "5302")
    assert one.status == PaymentStatus.REFUNDED and one.fulfilled_at is None and one.needs_review is None
    assert two.status == PaymentStatus.FINISHED and two.fulfilled_at is None and two.needs_review is None
    assert one.owner_share_usd is None
    with session_factory() as session:
        assert session.get(Invoice, refunded).status == InvoiceStatus.REFUNDED
        assert session.get(Invoice, dismissed).status == InvoiceStatus.PARTIALLY_PAID
        assert session.scalars(select(Subscription)).first() is None
    assert _jobs(session_factory, INVITE_JOB) == []
    assert [a.action for a in _audit(session_factory)] == ["payment.refunded", "payment.dismiss"]


def test_refuses_unknown_and_not_in_review(session_factory, clock, processor, channel, fulfilment):
    _pay(session_factory, clock, processor, channel, "5401")
    with pytest.raises(NotFound):
        _resolve(session_factory, fulfilment, clock, "nope", Action.DISMISS)
    with pytest.raises(Conflict):
        _resolve(session_factory, fulfilment, clock, "5401", Action.DISMISS)
    assert _audit(session_factory) == []


# ---- the commands ---------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch, tmp_path, database_url):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TELEPAY_DATA_DIR", str(tmp_path / "var"))

    def run(*args):
        return CliRunner().invoke(main, ["payments", *args])
    return run


def test_commands(session_factory, clock, processor, channel, cli):
    _pay(session_factory, clock, processor, channel, "5501")
    _pay(session_factory, clock, processor, channel, "5502", paid="0.0039")
    listed = cli("list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert "5502" in lines[0] and "review=underpaid" in lines[0] and "not-fulfilled" in lines[0]
    assert "5501" in lines[1] and " fulfilled" in lines[1] and "paid=0.004 ETH" in lines[1]
    review = cli("list", "--review")
    assert "5502" in review.output and "5501" not in review.output

    shown = cli("show", "5501")
    assert shown.exit_code == 0, shown.output
    assert "payment" in shown.output and "finished" in shown.output and "subscription" in shown.output
    assert re.search(r"^payout \d+: instant pending", shown.output, re.M)
    assert shown.output.count("IPN events:") == 1 and "confirming" in shown.output
    missing = cli("show", "nope")
    assert missing.exit_code == 2 and "no payment" in missing.output

    not_in_review = cli("resolve", "5501", "--action", "dismiss", "--reason", "x")
    assert not_in_review.exit_code == 2 and "not in review" in not_in_review.output
    unknown = cli("resolve", "nope", "--action", "dismiss", "--reason", "x")
    assert unknown.exit_code == 2
    resolved = cli("resolve", "5502", "--action", "fulfil", "--reason", "buyer sent the rest by hand")
    assert resolved.exit_code == 0, resolved.output
    assert _payment(session_factory, "5502").fulfilled_at is not None
    assert [a.after["reason"] for a in _audit(session_factory)] == ["buyer sent the rest by hand"]
    with session_factory() as session:
        assert session.scalars(select(Job).where(Job.kind == INVITE_JOB)).all()


def test_resolve_refunded_on_a_fulfilled_payment_takes_it_back_once(session_factory, clock, processor, channel, cli):
    _pay(session_factory, clock, processor, channel, "5601")
    payout_id = _payment(session_factory, "5601").payout_id

    done = cli("resolve", "5601", "--action", "refunded", "--reason", "refunded by hand")
    assert done.exit_code == 0, done.output
    assert "5601): refunded; status refunded" in done.output and "nothing changed" not in done.output
    assert re.search(r"^subscription \d+: expired until ", done.output, re.M)
    assert f"owner's share: cancelled, payout {payout_id} cancelled" in done.output
    with session_factory() as session:
        assert session.scalars(select(Subscription)).one().status.value == "expired"
    assert [a.after["reason"] for a in _audit(session_factory)] == ["refunded by hand"]

    again = cli("resolve", "5601", "--action", "refunded", "--reason", "again")
    assert again.exit_code == 0 and "refunded before; nothing changed" in again.output
    assert len(_audit(session_factory)) == 1
    dismissed = cli("resolve", "5601", "--action", "dismiss", "--reason", "x")
    assert dismissed.exit_code == 2 and "not in review" in dismissed.output


def test_refunding_a_buyer_stuck_in_the_delivery_queue_cancels_the_held_share(session_factory, clock, processor,
                                                                               channel, fulfilment):
    """The 48-hour policy's crypto case: the operator refunds by hand and records it; the buyer
    leaves the delivery queue and the share held for their delivery is cancelled."""
    invoice = _pay(session_factory, clock, processor, channel, "5701")
    with session_factory.begin() as session:
        subscription = session.scalars(select(Subscription)).one()
        session.add(Invite(subscription_id=subscription.id, invoice_id=invoice, chat_id=channel.closed_chat_id,
                           user_id=BUYER, name="x", status=InviteStatus.REVIEW, waiting_since=clock.now(),
                           created_at=clock.now(), updated_at=clock.now()))
    with session_factory() as session:
        assert len(delivery_queue(session)) == 1
    payout_id = _payment(session_factory, "5701").payout_id

    _resolve(session_factory, fulfilment, clock, "5701", Action.REFUNDED, "refunded: never let in")

    with session_factory() as session:
        assert delivery_queue(session) == []
        assert session.get(Payout, payout_id).status == PayoutStatus.CANCELLED
        assert session.scalars(select(Subscription)).one().status.value == "expired"
