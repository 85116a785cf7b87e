"""Telegram Stars through the real `telepay run`, the sandbox Telegram (which takes Stars), the
ChangeNOW sandbox and the dev chain, on one offset clock. In order, on one channel:

a purchase gives access and a re-delivered `successful_payment` grants nothing more; a price
changed after the invoice is refused at pre-checkout with a reason; payments we cannot match
change nothing and reach the operators; a refund by `telepay payments refund` ends access and
cancels the held share; a Star subscription is cancelled and resumed from /mysubs, and a month
later its recurring charge extends access; once the hold has passed, the owner is paid exactly
Stars x rate x (1 - fee) in USDT base units; the report balances; Stars-only mode offers no crypto.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import sessionmaker

from telepay.clock import OffsetFileClock
from telepay.models import (
    Channel, ChannelStatus, PayoutStrategy, ShareStatus, StarPayment, StarPaymentStatus, Subscription, Tier,
)
from telepay.services.stars import texts
from telepay.services.stars.report import stars_report
from telepay_sandbox.chain import DevChain
from telepay_sandbox.changenow import ChangeNowSandbox
from telepay_sandbox.database import empty_tables
from telepay_sandbox.harness import TelepayProcess, sandbox_env
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from telepay_sandbox.waiting import until

TOKEN = "444:stars-e2e"
BOT = "TelePayStarsE2E"
TIMEOUT = 20.0
PRICE_STARS, RATE, FEE = 2000, Decimal("0.013"), Decimal("0.10")
SHARE = PRICE_STARS * RATE * (1 - FEE)  # 23.4 USD: over the owner's 20 USD threshold


class StarsWorld:
    def __init__(self, database_url: str, tmp):
        self.clock = OffsetFileClock(tmp / "clock-offset")
        self._stack = ExitStack()
        self.chain = self._stack.enter_context(DevChain())
        self.telegram = self._stack.enter_context(TelegramSandbox(
            token=TOKEN, bot_username=BOT, rate_limits=RateLimits.off(), clock=self.clock))
        self.changenow = self._stack.enter_context(ChangeNowSandbox(
            "sandbox-changenow-key", self.chain, rate_limits=None, clock=self.clock))
        self.operator = self.telegram.create_user("Olga the operator")
        self.operator.command("start")
        env = sandbox_env(telegram_base_url=self.telegram.base_url, token=TOKEN, bot_username=BOT, data_dir=tmp,
                          database_url=database_url, changenow_base_url=self.changenow.base_url,
                          chain_env=self.chain.env(),
                          extra={"SWEEP_INTERVAL_SECONDS": "1", "PAYOUT_POLL_SECONDS": "0.3",
                                 "PAYOUT_BATCH_INTERVAL_SECONDS": "1", "WORKER_POLL_SECONDS": "0.2",
                                 "CLOCK_OFFSET_FILE": str(tmp / "clock-offset"),
                                 "ADMIN_CHAT_IDS": str(self.operator.id)})
        self.engine = create_engine(database_url)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.process = TelepayProcess(env, tmp / "telepay.log")
        self.process.start()

    def close(self) -> None:
        try:
            self.process.kill()
        finally:
            self._stack.close()
            empty_tables(self.engine)
            self.engine.dispose()

    def channel(self):
        """A live pair, one 30-day tier at $25 or 2,000 Stars, paid out in USDT past 20 USD."""
        owner = self.telegram.create_user("Paula")
        owner.command("start")
        owner.wait_for_message(lambda m: "Welcome" in m.text, timeout=TIMEOUT)
        open_chat = self.telegram.create_channel("Paula News", username="paula_stars", creator=owner)
        closed = self.telegram.create_channel("Paula VIP", creator=owner)
        for chat in (open_chat, closed):
            self.telegram.add_admin(chat, self.telegram.bot)
        wallet = self.chain.new_account().address
        with self.session_factory.begin() as session:
            channel = Channel(key="paulakey1", owner_user_id=owner.id, open_chat_id=open_chat.id,
                              closed_chat_id=closed.id, open_title="Paula News", closed_title="Paula VIP",
                              status=ChannelStatus.ACTIVE, payout_currency="usdt", payout_network="eth",
                              payout_address=wallet, payout_strategy=PayoutStrategy.THRESHOLD,
                              payout_threshold_usd=Decimal("20"),
                              next_post_at=datetime.now(timezone.utc) + timedelta(days=400))
            channel.tiers.append(Tier(number=1, price_usd=Decimal("25"), days=30, price_stars=PRICE_STARS))
            session.add(channel)
        return owner, closed, wallet

    def buyer(self, name: str, stars: int = 10_000):
        person = self.telegram.create_user(name, username=name.lower())
        person.stars = stars
        person.open_deep_link(f"https://t.me/{BOT}?start=paulakey1-1")
        card = person.wait_for_message(lambda m: "Subscription to" in m.text, timeout=TIMEOUT)
        return person, card

    def star_payments(self, person) -> list[StarPayment]:
        with self.session_factory() as session:
            return list(session.scalars(select(StarPayment).where(StarPayment.user_id == person.id)
                                        .order_by(StarPayment.id)))

    def subscription(self, person) -> Subscription | None:
        with self.session_factory() as session:
            return session.scalars(select(Subscription).where(Subscription.user_id == person.id)).one_or_none()


def invoice_of(person):
    return person.wait_for_message(lambda m: m.as_dict().get("invoice") is not None, timeout=TIMEOUT)


def join_with_invite(person, closed):
    welcome = person.wait_for_message(lambda m: "Payment received" in m.text, timeout=TIMEOUT)
    assert person.join(welcome.buttons[0]["url"]) == "requested"
    until(lambda: person.status_in(closed) == "member", what="the buyer let in")


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    running = StarsWorld(database_url, tmp_path_factory.mktemp("stars"))
    yield running
    running.close()
    assert running.telegram.errors == []


@pytest.fixture(scope="module")
def shop(world):
    return world.channel()


def test_a_stars_purchase_gives_access_and_a_repeated_update_grants_nothing_more(world, shop):
    owner, closed, _ = shop
    ann, card = world.buyer("Ann")
    labels = [b["text"] for b in card.buttons]
    assert labels == ["⭐ Pay 2,000 Stars", "🔁 2,000 Stars every 30 days (auto-renew)", "💳 Pay $25.00"]
    ann.press(card, text="⭐ Pay 2,000 Stars")
    invoice = invoice_of(ann)
    assert invoice.as_dict()["invoice"]["total_amount"] == PRICE_STARS
    assert ann.pay(invoice).paid and ann.stars == 8000
    join_with_invite(ann, closed)
    owner.wait_for_message(lambda m: "New subscription" in m.text and "⭐ 2,000 Stars" in m.text, timeout=TIMEOUT)

    paid = next(u for u in world.telegram.updates if "successful_payment" in u.get("message", {})
                and u["message"]["from"]["id"] == ann.id)
    world.telegram.redeliver(paid)
    until(lambda: "seen before" in world.process.log(), what="the repeat recognised")
    [row] = world.star_payments(ann)
    assert row.status == StarPaymentStatus.FULFILLED and row.share_status == ShareStatus.HELD
    assert row.share_usd == SHARE and row.usd_value == PRICE_STARS * RATE
    assert len([m for m in ann.messages() if "Payment received" in m.text]) == 1


def test_a_price_changed_since_the_invoice_is_refused_at_pre_checkout_with_the_reason(world, shop):
    ben, card = world.buyer("Ben")
    ben.press(card, text="⭐ Pay 2,000 Stars")
    invoice = invoice_of(ben)
    with world.session_factory.begin() as session:
        session.execute(update(Tier).values(price_stars=PRICE_STARS + 100))
    try:
        outcome = ben.pay(invoice)
    finally:
        with world.session_factory.begin() as session:
            session.execute(update(Tier).values(price_stars=PRICE_STARS))
    assert (outcome.status, outcome.error_message) == ("refused", texts.PRICE_CHANGED)
    assert ben.stars == 10_000 and world.star_payments(ben) == [] and world.subscription(ben) is None


def test_payments_we_cannot_match_change_nothing_and_reach_the_operators(world, shop):
    dan, card = world.buyer("Dan")
    world.telegram.force_payment(dan, "3f1e2d3c-0000-4000-8000-000000000000", 500)  # never issued
    dan.press(card, text="⭐ Pay 2,000 Stars")
    invoice_of(dan)
    world.telegram.force_payment(dan, _payload_of(world, dan), 1)  # an invoice of ours, 1 Star instead of 2,000
    until(lambda: len(world.star_payments(dan)) == 2, what="both recorded")
    assert {row.status for row in world.star_payments(dan)} == {StarPaymentStatus.REVIEW}
    assert {row.needs_review.split(":")[0] for row in world.star_payments(dan)} == {"unknown_payload",
                                                                                    "amount_differs"}
    assert world.subscription(dan) is None
    for reason in ("unknown_payload", "amount_differs"):
        world.operator.wait_for_message(lambda m, r=reason: r in m.text, timeout=TIMEOUT)
    dan.wait_for_message(lambda m: "couldn't match it" in m.text, timeout=TIMEOUT)


def _payload_of(world, person) -> str:
    from telepay.models import Invoice

    with world.session_factory() as session:
        return session.scalars(select(Invoice.id).where(Invoice.buyer_user_id == person.id)).one()


def test_a_refund_ends_access_cancels_the_held_share_and_tells_everyone(world, shop):
    owner, closed, _ = shop
    eve, card = world.buyer("Eve")
    eve.press(card, text="⭐ Pay 2,000 Stars")
    assert eve.pay(invoice_of(eve)).paid
    join_with_invite(eve, closed)
    [row] = world.star_payments(eve)
    done = world.process.telepay("payments", "refund", str(row.id))
    assert done.returncode == 0, done.stderr
    assert f"held share of {SHARE}" in done.stdout
    assert eve.stars == 10_000
    until(lambda: eve.status_in(closed) == "left", what="the refunded buyer removed")
    eve.wait_for_message(lambda m: "was refunded" in m.text, timeout=TIMEOUT)
    owner.wait_for_message(lambda m: "refunded to the buyer" in m.text and "cancelled" in m.text, timeout=TIMEOUT)
    [row] = world.star_payments(eve)
    assert (row.status, row.share_status) == (StarPaymentStatus.REFUNDED, ShareStatus.CANCELLED)
    again = world.process.telepay("payments", "refund", str(row.id))
    assert again.returncode != 0 and "was refunded" in again.stderr


def test_a_star_subscription_cancels_resumes_and_renews_a_month_later(world, shop):
    owner, closed, wallet = shop
    cat, card = world.buyer("Cat")
    cat.press(card, text="🔁 2,000 Stars every 30 days (auto-renew)")
    offer = cat.wait_for_message(lambda m: "every 30 days until you cancel" in m.text, timeout=TIMEOUT)
    link = cat.press(offer, text="⭐ Subscribe for 2,000 Stars")
    assert cat.pay(link).paid
    join_with_invite(cat, closed)
    charge = world.star_payments(cat)[0].charge_id
    first_end = world.subscription(cat).expires_at

    cat.send("/mysubs")
    listing = cat.wait_for_message(lambda m: "renews on" in m.text, timeout=TIMEOUT)
    cat.press(listing, text="⏸ Cancel auto-renewal of Paula VIP").wait_for_answer(timeout=TIMEOUT)
    until(lambda: world.telegram.star_subscription(cat, charge)["canceled"], what="Telegram told to cancel")
    until(lambda: "auto-renewal off" in listing.text, what="/mysubs edited in place")
    cat.press(listing, text="▶️ Resume auto-renewal of Paula VIP").wait_for_answer(timeout=TIMEOUT)
    until(lambda: not world.telegram.star_subscription(cat, charge)["canceled"], what="Telegram told to resume")
    assert world.subscription(cat).star_renews

    world.clock.advance(timedelta(days=30))
    until(lambda: len(world.star_payments(cat)) == 2, what="the recurring charge", timeout=TIMEOUT)
    renewal = world.star_payments(cat)[1]
    assert renewal.is_recurring and renewal.status == StarPaymentStatus.FULFILLED
    assert world.subscription(cat).expires_at == first_end + timedelta(days=30)
    assert cat.status_in(closed) == "member" and cat.stars == 6000


def test_after_the_hold_the_owner_is_paid_exactly_and_the_books_balance(world, shop):
    # 30 days have passed: Ann's and Cat's first shares are past the 21-day hold; Eve's was cancelled.
    owner, _, wallet = shop
    until(lambda: world.chain.balance_usdt(wallet) > 0, what="the owner's payout", timeout=60)
    assert world.chain.balance_usdt(wallet) == 2 * SHARE  # to the USDT base unit (micro-dollar)
    with world.session_factory() as session:
        money = stars_report(session)
        released = session.scalar(select(func.count()).select_from(StarPayment)
                                  .where(StarPayment.share_status == ShareStatus.RELEASED))
    assert released == 2 and money.balanced()
    assert money.released == 2 * SHARE and money.held == SHARE  # Cat's renewal, still held
    assert money.refunded == PRICE_STARS * RATE and money.review == 501 * RATE
    report = world.process.telepay("report", "--exact")
    assert report.returncode == 0 and "Telegram Stars: 6 payments" in report.stdout
    reconciled = world.process.telepay("stars", "reconcile")  # against the sandbox's getStarTransactions
    assert reconciled.returncode == 0 and "agree with Telegram's" in reconciled.stdout, reconciled.stderr


def test_paysupport_reaches_the_owner_and_the_operators_and_privacy_answers(world, shop):
    owner = shop[0]
    hal = world.telegram.create_user("Hal")  # a buyer with no payments on record
    hal.send("/paysupport")
    hal.wait_for_message(lambda m: "don't see any payments" in m.text, timeout=TIMEOUT)
    hal.send("I paid from my other account")
    hal.wait_for_message(lambda m: "is with our team" in m.text, timeout=TIMEOUT)
    world.operator.wait_for_message(lambda m: "no payment on record" in m.text, timeout=TIMEOUT)

    gus, card = world.buyer("Gus")
    gus.press(card, text="⭐ Pay 2,000 Stars")
    assert gus.pay(invoice_of(gus)).paid
    gus.send("/paysupport")
    choices = gus.wait_for_message(lambda m: "which payment" in m.text, timeout=TIMEOUT)
    gus.press(choices, text=choices.buttons[0]["text"])
    until(lambda: "What went wrong" in choices.text, what="the question")
    gus.send("The invite says expired")
    gus.wait_for_message(lambda m: "is with our team" in m.text, timeout=TIMEOUT)
    for who in (world.operator, owner):
        who.wait_for_message(lambda m: "The invite says expired" in m.text and "⭐ 2000" in m.text, timeout=TIMEOUT)
    gus.send("/privacy")
    assert "Privacy policy" in gus.wait_for_message(lambda m: "What we keep" in m.text, timeout=TIMEOUT).text
    gus.send("/terms")
    gus.wait_for_message(lambda m: m.text.startswith("📄 Terms"), timeout=TIMEOUT)


def test_a_donation_in_stars_through_the_keypad(world, shop):
    owner = shop[0]
    ivy = world.telegram.create_user("Ivy")
    ivy.stars = 1000
    ivy.open_deep_link(f"https://t.me/{BOT}?start=paulakey1-donate")
    keypad = ivy.wait_for_message(lambda m: "Donation to" in m.text, timeout=TIMEOUT)
    assert "US dollars" in keypad.text
    ivy.press(keypad, text="⭐ Donate in Telegram Stars instead").wait_for_answer(timeout=TIMEOUT)
    until(lambda: "Telegram Stars with the keypad" in keypad.text, what="the keypad in Stars")
    assert ivy.press(keypad, text=".").wait_for_answer(timeout=TIMEOUT)["text"] == "Stars are whole numbers."
    for key in "250":
        before = keypad.text
        ivy.press(keypad, text=key).wait_for_answer(timeout=TIMEOUT)
        until(lambda: keypad.text != before, what=f"keypad after {key}")
    assert "Amount: ⭐ 250\n" in keypad.text
    ivy.press(keypad, text="✅ Confirm").wait_for_answer(timeout=TIMEOUT)
    invoice = invoice_of(ivy)
    assert invoice.as_dict()["invoice"]["total_amount"] == 250
    assert ivy.pay(invoice).paid and ivy.stars == 750
    ivy.wait_for_message(lambda m: "Your donation of ⭐ 250 Stars" in m.text, timeout=TIMEOUT)
    owner.wait_for_message(lambda m: "New donation" in m.text and "⭐ 250 Stars" in m.text, timeout=TIMEOUT)


def test_stars_only_mode_offers_no_crypto(world, shop):
    fay, old_card = world.buyer("Fay")
    code, _ = world.process.stop()
    assert code == 0
    world.process.env["STARS_ONLY"] = "true"
    world.process.start()
    fay.open_deep_link(f"https://t.me/{BOT}?start=paulakey1-1")
    card = fay.wait_for_message(lambda m: "Subscription to" in m.text, timeout=TIMEOUT)
    assert [b["text"] for b in card.buttons] == ["⭐ Pay 2,000 Stars", "🔁 2,000 Stars every 30 days (auto-renew)"]
    assert "crypto" not in card.text
    fay.press(old_card, text="💳 Pay $25.00")  # a card from before: refused, no crypto invoice
    fay.wait_for_message(lambda m: "takes Telegram Stars only" in m.text, timeout=TIMEOUT)
    fay.open_deep_link(f"https://t.me/{BOT}?start=paulakey1-donate")
    keypad = fay.wait_for_message(lambda m: "Donation to" in m.text, timeout=TIMEOUT)
    assert "Telegram Stars with the keypad" in keypad.text and "Donate in" not in str(keypad.buttons)
