"""The money path through the real `telepay run` process: a buyer pays (signed IPNs from the
NOWPayments sandbox, repeated, concurrent and out of order), gets a personal join-request link,
a stranger's request on it is declined, the buyer's is approved, the link is revoked, and the
owner hears about the sale and its payout. Then the payments that end otherwise."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from telepay.models import (
    Channel, Invite, InviteStatus, Invoice, InvoiceStatus, Job, JobState, Payment, PaymentStatus, Payout,
    PayoutStatus, Subscription, SubscriptionStatus,
)
from telepay.services.messages import ALERT_PREFIX
from telepay_sandbox.nowpayments import Delivery
from telepay_sandbox.telegram import JoinRefused
from tests.bot.world import BOT, TIMEOUT, World, until


class MoneyWorld(World):
    """The bot's e2e world, plus an operator in ADMIN_CHAT_IDS."""

    def __init__(self, database_url, tmp):
        super().__init__(database_url, tmp)
        # The operator's id exists only once the sandbox runs: restart with it in ADMIN_CHAT_IDS.
        self.operator = self.telegram.create_user("Opal", username="opal_ops")
        self.process.env = {**self.process.env, "ADMIN_CHAT_IDS": str(self.operator.id)}
        self.restart()

    def count(self, model, *where) -> int:
        with self.session_factory() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))

    def jobs_idle(self) -> bool:
        with self.session_factory() as session:
            return not session.scalar(select(func.count()).select_from(Job).where(
                Job.state.in_([JobState.QUEUED, JobState.RUNNING]), Job.kind != "payout.run"))

    def invite_of(self, buyer) -> Invite:
        with self.session_factory() as session:
            return session.scalars(select(Invite).where(Invite.user_id == buyer.id)).one()

    def invoice_for(self, buyer, key: str) -> Invoice:
        """The buyer opens the tier link and presses Pay; our invoice row."""
        buyer.open_deep_link(f"https://t.me/{BOT}?start={key}-1")
        card = buyer.wait_for_message(lambda m: "Subscription to" in m.text, timeout=TIMEOUT)
        buyer.press(card, text="💳 Pay $7.50")
        buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT)
        with self.session_factory() as session:
            return session.scalars(select(Invoice).where(Invoice.buyer_user_id == buyer.id)
                                   .order_by(Invoice.created_at.desc()).limit(1)).one()


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    running = MoneyWorld(database_url, tmp_path_factory.mktemp("money-path"))
    yield running
    running.close()
    assert running.telegram.errors == []


@pytest.fixture(scope="module")
def shop(world):
    """A live channel (tier 1: $7.50 for 30 days); returns (owner, key, closed chat)."""
    world.operator.send("/start")
    world.operator.wait_for_message(timeout=TIMEOUT)
    owner, open_chat, closed_chat = world.owner_with_pair("Paula")
    form = world.register(owner, open_chat, closed_chat)
    world.set_up(owner, form, price="7.50", days="30")
    with world.session_factory() as session:
        key = session.scalars(select(Channel.key).where(Channel.open_chat_id == open_chat.id)).one()
    return owner, key, closed_chat


def test_a_paid_invoice_admits_the_buyer_alone_and_tells_the_owner(world, shop):
    owner, key, closed_chat = shop
    buyer = world.telegram.create_user("Bob", username="bob")
    invoice = world.invoice_for(buyer, key)

    # Ten simultaneous copies of every IPN, the five statuses in shuffled order.
    payment_id = world.nowpayments.pay(invoice.provider_invoice_id, delivery=Delivery(
        repeats=10, concurrent=True, order="shuffled", seed=7))
    records = world.nowpayments.ipns_for(payment_id)
    assert len(records) == 50 and all(record.ok for record in records)

    welcome = buyer.wait_for_message(lambda m: "Payment received" in m.text, timeout=TIMEOUT)
    link = welcome.buttons[0]["url"]
    assert "active until" in welcome.text and link.startswith("https://t.me/+")
    created = world.telegram.invite_links(closed_chat)
    ours = next(item for item in created if item["invite_link"] == link)
    assert ours["creates_join_request"] is True and ours["name"] == invoice.id.replace("-", "")

    # A stranger who got hold of the link is declined; the buyer is approved.
    stranger = world.telegram.create_user("Mallory")
    assert stranger.join(link) == "requested"
    until(lambda: stranger.id not in world.telegram.pending_join_requests(closed_chat), what="stranger handled")
    assert stranger.status_in(closed_chat) == "left"
    assert buyer.join(link) == "requested"
    until(lambda: buyer.status_in(closed_chat) == "member", what="buyer approved")
    until(lambda: next(item for item in world.telegram.invite_links(closed_chat)
                       if item["invite_link"] == link)["is_revoked"], what="link revoked")
    with pytest.raises(JoinRefused, match="revoked"):
        world.telegram.create_user("Trudy").join(link)

    note = owner.wait_for_message(lambda m: "New subscription" in m.text, timeout=TIMEOUT)
    assert "Paula VIP" in note.text and "$7.50" in note.text and "@bob" in note.text
    until(world.jobs_idle, what="jobs done")
    # The join handler revokes at Telegram first and records it after: wait for the record.
    until(lambda: world.invite_of(buyer).status == InviteStatus.USED, what="invite recorded as used")
    with world.session_factory() as session:
        payment = session.scalars(select(Payment).where(Payment.provider_payment_id == str(payment_id))).one()
        invite = session.scalars(select(Invite).where(Invite.user_id == buyer.id)).one()
        subscription = session.scalars(select(Subscription).where(Subscription.user_id == buyer.id)).one()
        invoice = session.get(Invoice, invoice.id)
    assert payment.status == PaymentStatus.FINISHED and invoice.status == InvoiceStatus.COMPLETED
    assert invite.status == InviteStatus.USED and invite.link == link and invite.revoked_at is not None
    assert subscription.last_invoice_id == invoice.id
    assert f"payout #{payment.payout_id} started" in note.text
    assert payment.owner_share_usd == Decimal("6.750000")
    assert world.count(Subscription, Subscription.user_id == buyer.id) == 1
    assert world.count(Payout, Payout.id == payment.payout_id) == 1
    assert len([m for m in owner.messages() if "New subscription" in m.text]) == 1
    assert len([m for m in buyer.messages() if "Payment received" in m.text]) == 1


def test_an_undelivered_invite_is_offered_again_in_mysubs(world, shop):
    _, key, closed_chat = shop
    buyer = world.telegram.create_user("Cleo")
    invoice = world.invoice_for(buyer, key)
    buyer.block_bot()
    world.nowpayments.pay(invoice.provider_invoice_id)
    until(lambda: world.count(Invite, Invite.user_id == buyer.id, Invite.status == InviteStatus.UNDELIVERED),
          what="invite kept as undelivered")
    buyer.unblock_bot()
    buyer.send("/mysubs")
    listing = buyer.wait_for_message(lambda m: "Your subscriptions" in m.text, timeout=TIMEOUT)
    buyer.press(listing, text="🔑 Get my invite to Paula VIP")
    fresh = buyer.wait_for_message(lambda m: "new personal invite" in m.text, timeout=TIMEOUT)
    assert buyer.join(fresh.buttons[0]["url"]) == "requested"
    until(lambda: buyer.status_in(closed_chat) == "member", what="buyer approved")

    def statuses():
        with world.session_factory() as session:
            return sorted(i.status.value for i in session.scalars(select(Invite).where(Invite.user_id == buyer.id)))

    # The new link is marked used once the bot has seen the buyer in the channel (a moment after
    # the approval); the undelivered one was revoked when the new one was made.
    until(lambda: statuses() == ["revoked", "used"], what="old link revoked, new one used")


def test_payments_that_end_otherwise_reach_the_buyer_and_the_operators(world, shop):
    _, key, _ = shop
    partial, lapsed, failing, refunded = (world.telegram.create_user(n) for n in ("Pat", "Lou", "Fay", "Ray"))

    world.nowpayments.pay(world.invoice_for(partial, key).provider_invoice_id, partial=True)
    short = partial.wait_for_message(lambda m: "less than the price" in m.text, timeout=TIMEOUT)
    assert "ETH" in short.text and "about $3.75" in short.text

    world.nowpayments.expire(world.invoice_for(lapsed, key).provider_invoice_id)
    lapsed.wait_for_message(lambda m: "expired" in m.text, timeout=TIMEOUT)

    world.nowpayments.pay(world.invoice_for(failing, key).provider_invoice_id, fail=True)
    failing.wait_for_message(lambda m: "failed" in m.text, timeout=TIMEOUT)

    payment_id = world.nowpayments.pay(world.invoice_for(refunded, key).provider_invoice_id)
    refunded.wait_for_message(lambda m: "Payment received" in m.text, timeout=TIMEOUT)
    world.nowpayments.refund(payment_id)
    refunded.wait_for_message(lambda m: "was refunded to you" in m.text, timeout=TIMEOUT)
    world.operator.wait_for_message(lambda m: "Refund after fulfilment" in m.text and str(payment_id) in m.text,
                                    timeout=TIMEOUT)
    child = world.nowpayments.redeposit(payment_id)
    refunded.wait_for_message(lambda m: "another payment" in m.text, timeout=TIMEOUT)
    world.operator.wait_for_message(lambda m: "Re-deposit" in m.text and str(child) in m.text, timeout=TIMEOUT)

    until(world.jobs_idle, what="jobs done")
    with world.session_factory() as session:
        by_buyer = {row.buyer_user_id: row.status for row in session.scalars(select(Invoice).where(
            Invoice.buyer_user_id.in_([partial.id, lapsed.id, failing.id, refunded.id])))}
        child_row = session.scalars(select(Payment).where(Payment.provider_payment_id == str(child))).one()
    assert by_buyer == {partial.id: InvoiceStatus.PARTIALLY_PAID, lapsed.id: InvoiceStatus.EXPIRED,
                        failing.id: InvoiceStatus.FAILED, refunded.id: InvoiceStatus.REFUNDED}
    assert child_row.fulfilled_at is None and child_row.needs_review.startswith("redeposit")
    assert world.count(Subscription, Subscription.user_id.in_([partial.id, lapsed.id, failing.id])) == 0
    # The refund took back what it bought: the term, and the owner's payout, which had not started.
    assert world.count(Subscription, Subscription.user_id == refunded.id,
                       Subscription.status == SubscriptionStatus.EXPIRED) == 1
    with world.session_factory() as session:
        refunded_row = session.scalars(select(Payment).where(Payment.provider_payment_id == str(payment_id))).one()
        assert session.get(Payout, refunded_row.payout_id).status == PayoutStatus.CANCELLED
    # The payment alerts, not the health monitor's (this world's host wallet has no chain to read).
    operator_texts = [m.text for m in world.operator.messages() if m.text.startswith(ALERT_PREFIX)]
    assert len(operator_texts) == 2


def test_a_top_up_after_partially_paid_lets_the_buyer_in(world, shop):
    """What the bot promises after `partially_paid`: send the rest to the same address and it
    continues. NOWPayments reports that top-up as a re-deposit with no order id of its own."""
    _, key, closed_chat = shop
    buyer = world.telegram.create_user("Tia")
    invoice = world.invoice_for(buyer, key)
    payment_id = world.nowpayments.pay(invoice.provider_invoice_id, partial=True)
    buyer.wait_for_message(lambda m: "less than the price" in m.text, timeout=TIMEOUT)
    parent = world.nowpayments.payment(payment_id)
    rest = world.nowpayments.to_usd(parent.pay_amount - parent.paid, parent.pay_currency)
    child = world.nowpayments.redeposit(payment_id, amount_usd=rest)
    welcome = buyer.wait_for_message(lambda m: "Payment received" in m.text, timeout=TIMEOUT)
    assert buyer.join(welcome.buttons[0]["url"]) == "requested"
    until(lambda: buyer.status_in(closed_chat) == "member", what="buyer approved")
    with world.session_factory() as session:
        assert session.get(Invoice, invoice.id).status == InvoiceStatus.COMPLETED
        row = session.scalars(select(Payment).where(Payment.provider_payment_id == str(child))).one()
    assert row.invoice_id == invoice.id and row.needs_review is None and row.owner_share_usd is not None
