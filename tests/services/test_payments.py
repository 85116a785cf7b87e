"""Payment processing against a real PostgreSQL: IPNs recorded as the webhook records them, then
the `payment.process` job run directly (concurrently where it matters)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select, update

from telepay.models import (
    Accumulation, Channel, Invite, InviteStatus, Invoice, InvoiceKind, InvoiceStatus, Job, JobState, Payment,
    PaymentStatus, Payout, PayoutStatus, PayoutStrategy, Subscription,
)
from telepay.models import PaymentEvent
from telepay.services.fulfilment import INVITE_JOB
from telepay.services.ipn import PROCESS_JOB
from telepay.services.messages import ALERT_JOB, DIRECT_JOB
from telepay.services.notifications import NOTIFY_JOB
from telepay.services.payments.state import furthest
from tests.services.payments_rig import BUYER, _count, _invoice, _ipn, _jobs

FULL = ("waiting", "confirming", "confirmed", "sending", "finished")


def test_concurrent_and_out_of_order_events_fulfil_exactly_once(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    for status in reversed(FULL):  # the furthest first, the rest late
        assert _ipn(session_factory, clock, invoice_id, "4001", status) == "accepted"
    assert len(_jobs(session_factory, PROCESS_JOB)) == 5

    # Ten runs at once for every stored event: the row lock makes them take turns.
    barrier = threading.Barrier(10)
    errors = []

    def run():
        try:
            barrier.wait()
            processor.process("4001")
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    with session_factory() as session:
        payment = session.scalars(select(Payment)).one()
        invoice = session.get(Invoice, invoice_id)
        subscription = session.scalars(select(Subscription)).one()
    assert payment.status == PaymentStatus.FINISHED and payment.fulfilled_at is not None
    assert invoice.status == InvoiceStatus.COMPLETED
    assert subscription.user_id == BUYER and subscription.last_invoice_id == invoice_id
    assert subscription.expires_at - payment.fulfilled_at == timedelta(days=30)
    assert payment.owner_share_usd == Decimal("9.000000") and payment.platform_fee_usd == Decimal("1.000000")
    assert _count(session_factory, Payout) == 1 and payment.payout_id is not None
    assert len(_jobs(session_factory, INVITE_JOB)) == 1
    with session_factory() as session:  # the invite's row is made with the grant, before any link
        invites = [(i.invoice_id, i.subscription_id, i.status, i.link) for i in session.scalars(select(Invite))]
    assert invites == [(invoice_id, subscription.id, InviteStatus.CREATED, None)]
    notes = _jobs(session_factory, NOTIFY_JOB)
    assert len(notes) == 1
    text = notes[0].payload["text"]
    assert "VIP" in text and "Tier 1 · 30 days" in text and "$10.00" in text and "@bob" in text
    assert f"payout #{payment.payout_id} started" in text
    # The finished event came first, so "we have seen your payment" was never queued.
    assert _jobs(session_factory, DIRECT_JOB) == []


def test_renewal_extends_from_the_later_of_now_and_the_current_expiry(session_factory, clock, processor, channel):
    first = _invoice(session_factory, channel)
    for status in FULL:
        _ipn(session_factory, clock, first, "4101", status)
    processor.process("4101")
    with session_factory() as session:
        expires = session.scalars(select(Subscription.expires_at)).one()
    clock.advance(timedelta(days=10))
    second = _invoice(session_factory, channel)
    for status in FULL:
        _ipn(session_factory, clock, second, "4102", status)
    processor.process("4102")
    with session_factory() as session:
        subscription = session.scalars(select(Subscription)).one()
    assert subscription.expires_at == expires + timedelta(days=30)  # still active: added to its end
    assert subscription.last_invoice_id == second
    assert len(_jobs(session_factory, INVITE_JOB)) == 2


def test_a_late_event_never_moves_a_payment_back(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    _ipn(session_factory, clock, invoice_id, "4201", "waiting")
    _ipn(session_factory, clock, invoice_id, "4201", "confirming")
    assert processor.process("4201") == PaymentStatus.CONFIRMING
    seen = _jobs(session_factory, DIRECT_JOB)
    assert len(seen) == 1 and "reached the blockchain" in seen[0].payload["text"]
    assert seen[0].payload["unless_completed"] == invoice_id
    _ipn(session_factory, clock, invoice_id, "4201", "finished")
    assert processor.process("4201") == PaymentStatus.FINISHED
    _ipn(session_factory, clock, invoice_id, "4201", "sending")  # late
    assert processor.process("4201") == PaymentStatus.FINISHED
    _ipn(session_factory, clock, invoice_id, "4201", "failed")  # contradicts an end state: ignored
    assert processor.process("4201") == PaymentStatus.FINISHED
    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.COMPLETED


def test_partially_paid_tells_the_buyer_what_is_missing_and_completes_nothing(session_factory, clock, processor,
                                                                             channel):
    invoice_id = _invoice(session_factory, channel)
    for status in ("waiting", "confirming", "partially_paid"):
        _ipn(session_factory, clock, invoice_id, "4301", status, paid="0.001")
    processor.process("4301")
    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.PARTIALLY_PAID
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
    texts = [job.payload["text"] for job in _jobs(session_factory, DIRECT_JOB)]
    assert any("0.001 ETH" in t and "0.003 ETH" in t and "$7.50" in t for t in texts), texts
    assert _count(session_factory, Payout) == 0 and _jobs(session_factory, INVITE_JOB) == []


def test_finished_within_the_tolerance_completes_and_below_it_goes_to_review(session_factory, clock, processor,
                                                                            channel):
    near = _invoice(session_factory, channel)
    for status in FULL:
        _ipn(session_factory, clock, near, "4401", status, paid="0.00399")  # 0.25 % short
    processor.process("4401")
    short = _invoice(session_factory, channel)
    for status in FULL:
        _ipn(session_factory, clock, short, "4402", status, paid="0.0039")  # 2.5 % short
    processor.process("4402")
    with session_factory() as session:
        assert session.get(Invoice, near).status == InvoiceStatus.COMPLETED
        assert session.get(Invoice, short).status == InvoiceStatus.PARTIALLY_PAID
        review = session.scalars(select(Payment).where(Payment.provider_payment_id == "4402")).one().needs_review
    assert review.startswith("underpaid")
    operator = [j.payload for j in _jobs(session_factory, ALERT_JOB)]
    assert len(operator) == 1 and "4402" in operator[0]["text"]


@pytest.mark.parametrize("end, invoice_status, words", [
    ("failed", InvoiceStatus.FAILED, "failed"),
    ("expired", InvoiceStatus.EXPIRED, "expired"),
    ("refunded", InvoiceStatus.REFUNDED, "refunded"),
])
def test_payments_that_end_without_money_close_the_invoice_and_tell_the_buyer(session_factory, clock, processor,
                                                                              channel, end, invoice_status, words):
    invoice_id = _invoice(session_factory, channel)
    for status in ("waiting", end):
        _ipn(session_factory, clock, invoice_id, "4501", status)
    processor.process("4501")
    processor.process("4501")  # a retry changes nothing
    with session_factory() as session:
        assert session.get(Invoice, invoice_id).status == invoice_status
    messages = [j.payload for j in _jobs(session_factory, DIRECT_JOB)]
    assert len(messages) == 1 and messages[0]["chat_id"] == BUYER and words in messages[0]["text"]


def test_refund_after_fulfilment_and_redeposits_go_to_the_operators(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    for status in FULL:
        _ipn(session_factory, clock, invoice_id, "4601", status)
    processor.process("4601")
    _ipn(session_factory, clock, invoice_id, "4601", "refunded")
    processor.process("4601")
    for status in ("confirming", "confirmed", "sending", "finished"):
        _ipn(session_factory, clock, invoice_id, "4602", status, parent="4601")
    processor.process("4602")
    processor.process("4602")
    with session_factory() as session:
        refunded = session.scalars(select(Payment).where(Payment.provider_payment_id == "4601")).one()
        child = session.scalars(select(Payment).where(Payment.provider_payment_id == "4602")).one()
        subscriptions = session.scalar(select(func.count()).select_from(Subscription))
    # The refund took back what it granted (its unfunded payout cancelled; tests/services/payouts/
    # test_refunds.py has the rest); the re-deposit after it grants nothing.
    assert refunded.status == PaymentStatus.REFUNDED and refunded.needs_review is None
    assert child.status == PaymentStatus.FINISHED and child.fulfilled_at is None and child.payout_id is None
    assert child.needs_review.startswith("redeposit")
    assert subscriptions == 1 and _count(session_factory, Payout) == 1  # nothing granted twice
    operator = [j.payload["text"] for j in _jobs(session_factory, ALERT_JOB)]
    assert len(operator) == 2
    assert any("Refund after fulfilment" in t for t in operator) and any("Re-deposit" in t for t in operator)
    buyer = [j.payload["text"] for j in _jobs(session_factory, DIRECT_JOB) if j.payload["chat_id"] == BUYER]
    assert any("refunded" in t and "access has ended" in t for t in buyer)
    assert any("another payment" in t for t in buyer)


def test_a_donation_thanks_the_donor_and_holds_a_threshold_share(session_factory, clock, processor, channel):
    with session_factory.begin() as session:
        row = session.get(Channel, channel.id)
        row.payout_strategy, row.payout_threshold_usd = PayoutStrategy.THRESHOLD, Decimal("50")
    invoice_id = _invoice(session_factory, channel, kind=InvoiceKind.DONATION)
    for status in FULL:
        _ipn(session_factory, clock, invoice_id, "4701", status)
    processor.process("4701")
    messages = [j.payload["text"] for j in _jobs(session_factory, DIRECT_JOB)]
    assert len(messages) == 1 and "Thank you" in messages[0] and "$10.00" in messages[0]
    note = _jobs(session_factory, NOTIFY_JOB)[0].payload["text"]
    assert "New donation to “News”" in note and "held for your next payout ($9.00 of $50.00" in note
    assert _count(session_factory, Accumulation) == 1 and _count(session_factory, Subscription) == 0


def test_a_refunded_donation_cancels_its_held_share_and_tells_donor_and_owner(session_factory, clock, processor,
                                                                               channel):
    with session_factory.begin() as session:
        row = session.get(Channel, channel.id)
        row.payout_strategy, row.payout_threshold_usd = PayoutStrategy.THRESHOLD, Decimal("50")
    invoice_id = _invoice(session_factory, channel, kind=InvoiceKind.DONATION)
    for status in (*FULL, "refunded"):
        _ipn(session_factory, clock, invoice_id, "4801", status)
        processor.process("4801")
    with session_factory() as session:
        accumulation = session.scalars(select(Accumulation)).one()
        assert session.get(Payout, accumulation.payout_id).status == PayoutStatus.CANCELLED
    donor = [j.payload["text"] for j in _jobs(session_factory, DIRECT_JOB)]
    assert donor[-1] == "↩️ Your donation to “News” was refunded to you. Thank you all the same!"
    owner = _jobs(session_factory, NOTIFY_JOB)[-1].payload["text"]
    assert "A donation to “News” from @bob was refunded to the donor" in owner and "$9.00" in owner
    (alert,) = [j.payload["text"] for j in _jobs(session_factory, ALERT_JOB)]
    assert "a donation; nothing to take back" in alert and "held for the owner's next batch" in alert


@pytest.mark.parametrize("opted_in, blocked", [(False, False), (True, True)])
def test_an_owner_who_opted_out_or_blocked_the_bot_is_not_notified(session_factory, clock, processor, channel,
                                                                   opted_in, blocked):
    with session_factory.begin() as session:
        row = session.get(Channel, channel.id)
        row.notify_enabled, row.owner_blocked_bot = opted_in, blocked
    invoice_id = _invoice(session_factory, channel)
    for status in FULL:
        _ipn(session_factory, clock, invoice_id, "4801", status)
    processor.process("4801")
    assert _jobs(session_factory, NOTIFY_JOB) == [] and len(_jobs(session_factory, INVITE_JOB)) == 1


def test_furthest_ranks_finished_above_failed_and_expired():
    class E:
        def __init__(self, status):
            self.status = status
    assert furthest([E("waiting"), E("finished"), E("failed"), E("confirming")]).status == "finished"
    assert furthest([E("failed"), E("finished")]).status == "finished"  # the money arrived after all
    assert furthest([E("expired"), E("failed")]).status == "expired"
    assert furthest([E("finished"), E("refunded")]).status == "refunded"
    assert furthest([E("surprise")]) is None


def _event_ids(session_factory, payment_id) -> dict[str, int]:
    with session_factory() as session:
        return {e.status: e.id for e in session.scalars(select(PaymentEvent).where(
            PaymentEvent.provider_payment_id == payment_id))}


def test_a_job_whose_event_is_applied_does_not_wait_for_the_payment_lock(session_factory, clock, processor,
                                                                         channel):
    invoice_id = _invoice(session_factory, channel)
    for status in ("confirming", "finished"):
        _ipn(session_factory, clock, invoice_id, "4901", status)
    events = _event_ids(session_factory, "4901")
    assert processor.process("4901", events["finished"]) == PaymentStatus.FINISHED  # applies both
    with session_factory.begin() as holder:  # another run holds the payment's row
        holder.scalars(select(Payment).where(Payment.provider_payment_id == "4901").with_for_update()).one()
        done = []
        late = threading.Thread(target=lambda: done.append(processor.process("4901", events["confirming"])))
        late.start()
        late.join(timeout=10)
        assert done == [None]  # it returned without waiting for the lock
    assert len(_jobs(session_factory, INVITE_JOB)) == 1


def test_a_job_leaves_its_event_to_a_queued_job_of_a_later_event(session_factory, clock, processor, channel):
    invoice_id = _invoice(session_factory, channel)
    for status in ("confirming", "finished"):
        _ipn(session_factory, clock, invoice_id, "5001", status)
    events = _event_ids(session_factory, "5001")
    assert processor.process("5001", events["confirming"]) is None  # the finished job is queued
    with session_factory() as session:
        assert session.scalars(select(Payment.fulfilled_at).where(Payment.provider_payment_id == "5001")).one() \
            is None  # untouched
    assert processor.process("5001", events["finished"]) == PaymentStatus.FINISHED
    assert _jobs(session_factory, DIRECT_JOB) == []  # "on its way" never queued: it was already done
    # Once no later job is queued (it ran), a job of an unapplied event does the work itself.
    with session_factory.begin() as session:
        session.execute(update(Job).where(Job.kind == PROCESS_JOB).values(state="done"))
    _ipn(session_factory, clock, invoice_id, "5001", "refunded")
    assert processor.process("5001", _event_ids(session_factory, "5001")["refunded"]) == PaymentStatus.REFUNDED


def test_a_new_event_supersedes_the_queued_jobs_of_earlier_ones(session_factory, clock, processor, channel):
    """Recording an IPN makes the payment's queued processing jobs of earlier events done: the new
    event's job applies them all, so the newest status does not wait behind their turns. A job
    already claimed is left alone, and one being claimed right now is skipped, not waited for."""
    invoice_id = _invoice(session_factory, channel)
    _ipn(session_factory, clock, invoice_id, "5201", "waiting")
    with session_factory.begin() as session:  # the waiting job is claimed (running) by a worker
        session.execute(update(Job).where(Job.kind == PROCESS_JOB).values(state="running"))
    _ipn(session_factory, clock, invoice_id, "5201", "confirming")
    _ipn(session_factory, clock, invoice_id, "5201", "confirmed")
    states = {job.dedupe_key: job.state for job in _jobs(session_factory, PROCESS_JOB)}
    assert states == {"5201:waiting": JobState.RUNNING, "5201:confirming": JobState.DONE,
                      "5201:confirmed": JobState.QUEUED}
    with session_factory.begin() as claim:  # a worker's claim holds the confirmed job's row...
        claim.scalars(select(Job).where(Job.dedupe_key == "5201:confirmed").with_for_update()).one()
        recorded = []
        late = threading.Thread(target=lambda: recorded.append(
            _ipn(session_factory, clock, invoice_id, "5201", "finished")))
        late.start()
        late.join(timeout=10)
        assert recorded == ["accepted"]  # ...and the IPN did not wait for it
    states = {job.dedupe_key: job.state for job in _jobs(session_factory, PROCESS_JOB)}
    assert states["5201:confirmed"] == JobState.QUEUED and states["5201:finished"] == JobState.QUEUED
    events = _event_ids(session_factory, "5201")
    assert processor.process("5201", events["finished"]) == PaymentStatus.FINISHED  # applies every event
    assert len(_jobs(session_factory, INVITE_JOB)) == 1


def _store_event(session_factory, payment_id, status):
    body = {"payment_id": payment_id, "payment_status": status, "pay_amount": "0.004", "actually_paid": "0.004",
            "pay_currency": "eth", "price_amount": "10.00"}
    with session_factory.begin() as session:
        session.add(PaymentEvent(provider_payment_id=payment_id, status=status, raw_body=str(body), body=body))


def test_an_event_stored_during_a_run_is_left_for_its_own_job(session_factory, engine, clock, processor,
                                                              channel):
    """A run marks processed only the events it read: one stored after it read them (injected just
    before it marks its events) keeps `processed_at` empty, so its own job still applies it."""
    invoice_id = _invoice(session_factory, channel)
    _ipn(session_factory, clock, invoice_id, "5101", "confirming")

    injected = []

    def store_a_late_event(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("UPDATE payment_events") and not injected:
            # Only the event row: recording the whole IPN would wait for this run's payment row.
            late = threading.Thread(target=_store_event, args=(session_factory, "5101", "finished"))
            late.start()
            late.join()  # committed in its own transaction before this run marks its events
            injected.append(late)

    event.listen(engine, "before_cursor_execute", store_a_late_event)
    try:
        confirming = _event_ids(session_factory, "5101")["confirming"]
        assert processor.process("5101", confirming) == PaymentStatus.CONFIRMING
    finally:
        event.remove(engine, "before_cursor_execute", store_a_late_event)
    assert injected
    finished = _event_ids(session_factory, "5101")["finished"]
    with session_factory() as session:
        assert session.get(PaymentEvent, finished).processed_at is None
    assert processor.process("5101", finished) == PaymentStatus.FINISHED
    assert len(_jobs(session_factory, INVITE_JOB)) == 1
