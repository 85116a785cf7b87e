"""A payment refunded after fulfilment (issue 12: "the refund-after-fulfilment alert doesn't name
the payout still in flight (it was then paid out)"), over the real payout world: PostgreSQL, the
dev chain and the ChangeNOW sandbox. The refund arrives as NOWPayments' IPN or as an operator's
`payments resolve --action refunded`; the chain is asked what was sent."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.api.schemas import IpnIn
from telepay.models import (
    AuditLog, Invoice, InvoiceKind, InvoiceStatus, Job, Payment, PaymentStatus, PayoutStatus, Subscription,
    SubscriptionStatus, Tier,
)
from telepay.models.channels import PayoutStrategy
from telepay.services.delivery import mark_delivered
from telepay.services.fulfilment import Fulfilment
from telepay.services.ipn import record_ipn
from telepay.services.messages import ALERT_JOB, DIRECT_JOB
from telepay.services.notifications import NOTIFY_JOB
from telepay.services.payments.operator import Action, resolve_payment
from telepay.services.payments.processor import PaymentProcessor
from telepay.services.payouts.allocation import held_total
from telepay.services.subscriptions import EXPIRE_JOB, micros
from tests.services.payments_rig import BUYER
from tests.services.payouts.conftest import FEE, Crash

FULL = ("waiting", "confirming", "confirmed", "sending", "finished")


@pytest.fixture
def fulfilment(world):
    return Fulfilment(world.jobs, fee_percent=FEE)


@pytest.fixture
def processor(world, fulfilment):
    return PaymentProcessor(world.session_factory, world.jobs, world.clock, fulfilment=fulfilment,
                            tolerance_percent=Decimal("0.5"))


def _channel(world, currency="eth", network="eth", **kwargs):
    channel = world.channel(currency, network, **kwargs)
    with world.session_factory.begin() as session:
        session.add(Tier(channel_id=channel.id, number=1, price_usd=Decimal("10.00"), days=30))
    return channel


def _sale(world, processor, channel, ref: str, *, deliver: bool = True, usd: str = "10.00") -> tuple[str, int]:
    """A 30-day subscription paid in full through NOWPayments' IPNs: (invoice id, payment id)."""
    with world.session_factory.begin() as session:
        tier = session.scalars(select(Tier).where(Tier.channel_id == channel.id)).one()
        invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel.id,
                          tier_id=tier.id, buyer_user_id=BUYER, buyer_username="bob", price_usd=Decimal(usd),
                          days=30, status=InvoiceStatus.PENDING, created_at=world.clock.now())
        session.add(invoice)
    for status in FULL:
        _ipn_usd(world, invoice.id, ref, status, usd)
    assert processor.process(ref) == PaymentStatus.FINISHED
    if deliver:  # the invite went out: the owner's payout is queued
        with world.session_factory.begin() as session:
            mark_delivered(session, world.jobs, invoice.id, world.clock.now())
    with world.session_factory() as session:
        return invoice.id, session.scalars(select(Payment.id).where(Payment.provider_payment_id == ref)).one()


def _ipn_usd(world, invoice_id: str, ref: str, status: str, usd: str) -> None:
    """An IPN as the webhook records it, for a price of `usd` paid in ETH at 2,500 USD."""
    eth = Decimal(usd) / 2500
    body = {"payment_id": ref, "payment_status": status, "order_id": invoice_id, "price_amount": Decimal(usd),
            "price_currency": "usd", "pay_amount": eth, "actually_paid": eth if status != "waiting" else 0,
            "actually_paid_at_fiat": Decimal(usd), "pay_currency": "eth"}
    with world.session_factory.begin() as session:
        record_ipn(session, IpnIn.model_validate(body), body, str(body), world.clock.now())


def _refund_ipn(world, processor, invoice_id: str, ref: str, usd: str = "10.00") -> None:
    _ipn_usd(world, invoice_id, ref, "refunded", usd)
    assert processor.process(ref) == PaymentStatus.REFUNDED


def _payment(world, payment_id: int) -> Payment:
    with world.session_factory() as session:
        return session.get(Payment, payment_id)


def _subscription(world) -> Subscription:
    with world.session_factory() as session:
        return session.scalars(select(Subscription).where(Subscription.user_id == BUYER)).one()


def _payloads(world, kind: str) -> list[dict]:
    with world.session_factory() as session:
        return [j.payload for j in session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id))]


def _effects(world) -> dict[str, int]:
    """How many of each thing a refund queues or writes, to show a repeat adds none."""
    with world.session_factory() as session:
        audits = len(session.scalars(select(AuditLog.id)).all())
    return {kind: len(_payloads(world, kind)) for kind in (ALERT_JOB, DIRECT_JOB, NOTIFY_JOB, EXPIRE_JOB)} | {
        "audit": audits, "payouts": len(world.payouts())}


def _resolve(world, fulfilment, ref: str, reason: str = "buyer refunded by hand"):
    with world.session_factory.begin() as session:
        return resolve_payment(session, fulfilment, ref, Action.REFUNDED, reason, world.clock.now())


def test_refund_ipn_before_funding_cancels_the_payout_ends_access_and_names_everything(world, processor, fulfilment):
    channel = _channel(world)
    invoice_id, payment_id = _sale(world, processor, channel, "r-101")
    payout = world.payout_of(payment_id)
    assert payout.status == PayoutStatus.PENDING and len(world.open_jobs()) == 1  # queued, not run

    world.clock.advance(timedelta(minutes=5))
    before_refund = world.clock.now()
    _refund_ipn(world, processor, invoice_id, "r-101")
    refunded_at = world.clock.now()

    assert world.payout(payout.id).status == PayoutStatus.CANCELLED
    world.drain()  # the queued run finds it cancelled
    assert world.payout(payout.id).status == PayoutStatus.CANCELLED
    assert world.chain_txs(payout.id) == [] and world.host_transfers(channel.payout_address, "eth") == []
    payment = _payment(world, payment_id)
    assert payment.status == PaymentStatus.REFUNDED and payment.needs_review is None
    with world.session_factory() as session:
        assert session.get(Invoice, invoice_id).status == InvoiceStatus.REFUNDED

    # The term it bought has ended; the removal job (ban + unban) is queued as the sweep queues it.
    subscription = _subscription(world)
    assert subscription.status == SubscriptionStatus.EXPIRED
    assert before_refund <= subscription.expires_at <= refunded_at  # it ended at the refund
    assert _payloads(world, EXPIRE_JOB) == [{"subscription_id": subscription.id,
                                              "expires_at_us": micros(subscription.expires_at)}]

    (alert,) = [p["text"] for p in _payloads(world, ALERT_JOB)]
    for named in (f"Payment {payment_id}", "NOWPayments r-101", f"invoice {invoice_id}", "@bob", f"user {BUYER}",
                  f"channel {channel.id}", f"payout {payout.id}, pending: cancelled by TelePay",
                  "nothing was sent", f"`telepay payouts show {payout.id}`", "30 days taken back", "has ended"):
        assert named in alert, (named, alert)
    buyer = [p["text"] for p in _payloads(world, DIRECT_JOB) if p["chat_id"] == BUYER]
    assert len(buyer) == 1 and "refunded" in buyer[0] and "access has ended" in buyer[0]
    (owner,) = [p["text"] for p in _payloads(world, NOTIFY_JOB) if "refunded" in p["text"]]
    assert "$9.00" in owner and "cancelled" in owner

    # Idempotent: the same IPN again, another run, an operator marking it refunded too.
    before = _effects(world)
    _ipn_usd(world, invoice_id, "r-101", "refunded", "10.00")
    processor.process("r-101")
    assert _resolve(world, fulfilment, "r-101").changed is False
    assert _effects(world) == before
    assert _subscription(world).expires_at == subscription.expires_at


def test_refund_ipn_after_the_payout_was_sent_goes_to_review_and_says_so(world, processor, fulfilment):
    channel = _channel(world)
    invoice_id, payment_id = _sale(world, processor, channel, "r-201")
    world.drain()
    payout = world.payout_of(payment_id)
    assert payout.status == PayoutStatus.FINISHED
    assert len(world.host_transfers(channel.payout_address, "eth")) == 1

    _refund_ipn(world, processor, invoice_id, "r-201")

    assert world.payout(payout.id).status == PayoutStatus.FINISHED  # nothing can be recalled
    assert len(world.host_transfers(channel.payout_address, "eth")) == 1
    payment = _payment(world, payment_id)
    assert payment.needs_review.startswith(f"refund_after_fulfilment: the owner's share of $9.00 is in payout "
                                           f"{payout.id}, finished, sent")
    (alert,) = [p["text"] for p in _payloads(world, ALERT_JOB)]
    for named in (f"payout {payout.id}, finished: SENT, it cannot be recalled", "review",
                  f"`telepay payouts show {payout.id}`", f"`telepay payments resolve {payment_id}"):
        assert named in alert, (named, alert)
    (owner,) = [p["text"] for p in _payloads(world, NOTIFY_JOB) if "refunded" in p["text"]]
    assert "already sent" in owner and f"#{payout.id}" in owner
    assert _subscription(world).status == SubscriptionStatus.EXPIRED  # the buyer has their money back

    # The operator settles the review: the audit row is written, nothing is taken back twice.
    before = _effects(world)
    first = _resolve(world, fulfilment, "r-201", "owner repaid by hand")
    assert first.changed is True and first.refund.applied is False
    assert _payment(world, payment_id).needs_review is None
    assert _effects(world) == before | {"audit": before["audit"] + 1}
    assert _resolve(world, fulfilment, "r-201").changed is False
    assert _effects(world) == before | {"audit": before["audit"] + 1}


def test_resolve_refunded_on_a_fulfilled_renewal_takes_exactly_its_days(world, processor, fulfilment):
    channel = _channel(world)
    _, first_id = _sale(world, processor, channel, "r-301")
    world.drain()  # the first purchase's share is paid out
    world.clock.advance(timedelta(days=3))
    _, renewal_id = _sale(world, processor, channel, "r-302")
    extended = _subscription(world).expires_at
    renewal_payout = world.payout_of(renewal_id)
    assert renewal_payout.status == PayoutStatus.PENDING and renewal_payout.id != world.payout_of(first_id).id

    resolution = _resolve(world, fulfilment, "r-302", "refunded by hand at the buyer's request")

    assert resolution.changed and resolution.refund.applied
    subscription = _subscription(world)
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.expires_at == extended - timedelta(days=30)  # exactly the renewal's days
    assert _payloads(world, EXPIRE_JOB) == []  # still paid up: nobody is removed
    assert world.payout(renewal_payout.id).status == PayoutStatus.CANCELLED
    world.drain()
    assert len(world.host_transfers(channel.payout_address, "eth")) == 1  # the first purchase's only
    with world.session_factory() as session:
        (audit,) = session.scalars(select(AuditLog)).all()
    assert audit.action == "payment.refunded" and audit.after["reason"] == "refunded by hand at the buyer's request"
    assert audit.after["share"] == "cancelled" and audit.after["payout_id"] == renewal_payout.id
    assert audit.before["fulfilled"] is True and audit.before["needs_review"] is None
    buyer = [p["text"] for p in _payloads(world, DIRECT_JOB) if "refunded" in p["text"]]
    assert len(buyer) == 1 and "now runs until" in buyer[0]
    assert any("cancelled" in p["text"] for p in _payloads(world, NOTIFY_JOB) if "refunded" in p["text"])
    (alert,) = _payloads(world, ALERT_JOB)
    assert "an operator marked it refunded: refunded by hand" in alert["text"]

    before = _effects(world)
    assert _resolve(world, fulfilment, "r-302").changed is False  # twice -> once
    assert _effects(world) == before and _subscription(world).expires_at == subscription.expires_at


def test_a_held_threshold_share_is_cancelled_and_a_batch_gives_the_others_back(world, processor, fulfilment):
    channel = world.channel("usdt", "eth", strategy=PayoutStrategy.THRESHOLD, threshold=Decimal("20"))
    with world.session_factory.begin() as session:
        session.add(Tier(channel_id=channel.id, number=1, price_usd=Decimal("10.00"), days=30))
    held_invoice, held_id = _sale(world, processor, channel, "r-401")

    _refund_ipn(world, processor, held_invoice, "r-401")  # held, not batched yet
    with world.session_factory() as session:
        assert held_total(session, channel.id) == 0
    assert world.payout_of(held_id).status == PayoutStatus.CANCELLED

    batched_invoice, batched_id = _sale(world, processor, channel, "r-402")
    kept = [_sale(world, processor, channel, ref)[1] for ref in ("r-403", "r-404")]
    (batch_id,) = world.scheduler.batches()  # $27 held reaches the $20 threshold
    assert {world.payout_of(p).id for p in (batched_id, *kept)} == {batch_id}

    _refund_ipn(world, processor, batched_invoice, "r-402")  # in an unfunded batch with other shares
    assert world.payout(batch_id).status == PayoutStatus.CANCELLED
    assert world.payout_of(batched_id).status == PayoutStatus.CANCELLED
    assert [world.payout_of(p) for p in kept] == [None, None]  # held again
    with world.session_factory() as session:
        assert held_total(session, channel.id) == Decimal("18")
    alert = [p["text"] for p in _payloads(world, ALERT_JOB) if "r-402" in p["text"]][0]
    assert f"payout {batch_id}, pending, shared with other sales: cancelled by TelePay" in alert
    assert "held for the owner's next batch" in alert

    _sale(world, processor, channel, "r-405")
    (again,) = world.scheduler.batches()
    world.drain()
    assert world.payout(again).status == PayoutStatus.FINISHED
    assert world.payout(again).amount_usd == Decimal("27")  # r-403, r-404, r-405; never the refunded two
    assert world.chain_txs(batch_id) == []


def test_a_share_absorbed_into_an_instant_payout_whose_exchange_exists_is_cut_out(world, processor):
    """The refunded sale was carried over (below ChangeNOW's minimum) and absorbed by a later
    payout, which had already created its exchange: that payout is cancelled (its exchange is
    never funded) and the later sale's share goes on in a new payout, exchanged afresh."""
    channel = _channel(world, "btc", "btc")
    small_invoice, small_id = _sale(world, processor, channel, "r-501")
    world.drain()
    carried = world.payout_of(small_id)
    assert carried.status == PayoutStatus.CARRIED_OVER
    big_id = world.pay(channel, Decimal("120"))
    payout = world.payout_of(big_id)
    assert world.payout_of(small_id).id == payout.id and payout.amount_usd == Decimal("117")  # 9 + 108
    world.crasher.armed.add("after_exchange_created")
    with pytest.raises(Crash):
        world.runner.run(payout.id)  # the exchange exists at ChangeNOW; the worker died before recording it
    (stale,) = world.exchanges.find(world.payout(payout.id))

    _refund_ipn(world, processor, small_invoice, "r-501")

    assert world.payout(payout.id).status == PayoutStatus.CANCELLED
    rest = world.payout_of(big_id)
    assert rest.id != payout.id and rest.amount_usd == Decimal("108") and rest.status == PayoutStatus.PENDING
    assert world.payout_of(small_id).id == payout.id  # the refunded share stays with the cancelled payout
    alert = [p["text"] for p in _payloads(world, ALERT_JOB) if "r-501" in p["text"]][0]
    assert f"payout {payout.id}, exchange_requested, shared with other sales: cancelled by TelePay" in alert
    assert f"go on in payout {rest.id}" in alert and f"`telepay payouts cancel {rest.id} --reason" in alert

    world.drain()
    rest = world.payout(rest.id)
    assert rest.status == PayoutStatus.FINISHED and rest.exchange_id != stale.exchange_id
    assert world.payout(payout.id).status == PayoutStatus.CANCELLED and world.chain_txs(payout.id) == []
    assert world.host_transfers(stale.payin_address, "eth") == []  # the stale exchange got nothing
    assert [t.amount for t in world.host_transfers(rest.payin_address, "eth")] == [rest.from_amount]


def test_a_refund_landing_while_the_payout_runs_stops_it_before_signing_and_not_after(world, processor):
    """The refund's job and the payout's job run at the same moment. Landing after the exchange
    is created but before the host signs: the payout stops and nothing is sent. Landing just after
    the transfer was signed: the money counts as sent, and the refund says so and goes to review."""
    channel = _channel(world, "usdt", "eth")
    early_invoice, early_id = _sale(world, processor, channel, "r-601", deliver=False, usd="50.00")
    late_invoice, late_id = _sale(world, processor, channel, "r-602", deliver=False, usd="50.00")
    early, late = world.payout_of(early_id), world.payout_of(late_id)
    for invoice_id in (early_invoice, late_invoice):
        with world.session_factory.begin() as session:
            mark_delivered(session, world.jobs, invoice_id, world.clock.now())

    def refund_at(name: str, invoice_id: str, ref: str):
        def hook(reached: str) -> None:
            if reached == name:
                _refund_ipn(world, processor, invoice_id, ref, "50.00")
        return hook

    world.runner.checkpoint = refund_at("after_exchange_created", early_invoice, "r-601")
    assert world.runner.run(early.id) == PayoutStatus.CANCELLED
    assert world.chain_txs(early.id) == []
    assert any(f"Payout {early.id}: ChangeNOW exchange" in a and "left unfunded" in a for a in world.alerts())
    assert _payment(world, early_id).needs_review is None

    world.runner.checkpoint = lambda name: None
    world.wallet.checkpoint = refund_at("after_sign", late_invoice, "r-602")
    world.drain()
    assert world.payout(late.id).status == PayoutStatus.FINISHED and len(world.chain_txs(late.id)) == 1
    assert _payment(world, late_id).needs_review.startswith("refund_after_fulfilment")
    alert = [p["text"] for p in _payloads(world, ALERT_JOB) if "r-602" in p["text"]][0]
    assert f"payout {late.id}, funding: SENT, it cannot be recalled" in alert
    assert world.payout(early.id).status == PayoutStatus.CANCELLED and world.chain_txs(early.id) == []
