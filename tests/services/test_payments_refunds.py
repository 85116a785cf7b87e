"""A refund after fulfilment that ends the buyer's term removes them through the expiry job
(ban, then unban) against the sandbox Telegram, as the sweep would, and leaves alone a buyer the
channel's owner has banned themselves. (The money side: tests/services/payouts/test_refunds.py.)"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from telepay.models import (
    Invoice, InvoiceKind, InvoiceStatus, Job, JobState, Subscription, SubscriptionStatus, Tier,
)
from telepay.services import lifecycle
from telepay.services.fulfilment import Fulfilment
from telepay.services.payments.processor import PaymentProcessor
from tests.services.lifecycle_rig import Rig
from tests.services.payments_rig import _ipn

FULL = ("waiting", "confirming", "confirmed", "sending", "finished")


@pytest.fixture
def rig(session_factory):
    made = Rig(session_factory)
    yield made
    made.close()
    assert made.telegram.errors == []


def _bought(rig, processor, channel_id, person, ref: str) -> str:
    with rig.session_factory.begin() as session:
        tier = session.scalars(select(Tier).where(Tier.channel_id == channel_id)).one()
        invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=channel_id, tier_id=tier.id,
                          buyer_user_id=person.id, price_usd=Decimal("10.00"), days=30,
                          status=InvoiceStatus.PENDING, created_at=rig.clock.now())
        session.add(invoice)
    for status in FULL:
        _ipn(rig.session_factory, rig.clock, invoice.id, ref, status)
    processor.process(ref)
    return invoice.id


def test_a_refund_that_ends_the_term_removes_the_buyer_but_not_an_owners_ban(rig):
    processor = PaymentProcessor(rig.session_factory, rig.jobs, rig.clock,
                                 fulfilment=Fulfilment(rig.jobs, fee_percent=Decimal(10)),
                                 tolerance_percent=Decimal("0.5"))
    channel_id, _, closed = rig.channel()
    member, banned = rig.telegram.create_user("Mia"), rig.telegram.create_user("Ben")
    for person in (member, banned):
        person.command("start")
        rig.telegram.set_member_status(closed, person, "member")
    invoices = {p.id: _bought(rig, processor, channel_id, p, f"rr-{p.id}") for p in (member, banned)}
    rig.telegram.set_member_status(closed, banned, "kicked")  # the owner bans one of them
    for person in (member, banned):
        _ipn(rig.session_factory, rig.clock, invoices[person.id], f"rr-{person.id}", "refunded")
        processor.process(f"rr-{person.id}")
    # The IPNs were processed above, by hand; invites and payouts are other tests' business.
    with rig.session_factory.begin() as session:
        session.execute(update(Job).where(Job.kind.in_(("payment.process", "invite.send", "payout.run")))
                        .values(state=JobState.DONE))
    rig.work()

    assert member.status_in(closed) == "left"  # removed, and free to come back by paying
    assert banned.status_in(closed) == "kicked"  # the owner's ban stays
    assert [int(c.params["user_id"]) for c in rig.telegram.calls_to("unbanChatMember")] == [member.id]
    member.wait_for_message(lambda m: "was refunded to you" in m.text and "access has ended" in m.text)
    expired = rig.jobs_of(lifecycle.EXPIRE_JOB)
    assert len(expired) == 2 and all(j.state == JobState.DONE for j in expired)
    with rig.session_factory() as session:
        statuses = set(session.scalars(select(Subscription.status)))
    assert statuses == {SubscriptionStatus.EXPIRED}
    assert rig.sweep.run_once().expired == 0  # nothing left for the sweep to do twice
