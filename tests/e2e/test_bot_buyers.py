"""Buyers and donors through the real process, the sandbox Telegram and the sandbox NOWPayments:
tier links (good, edited, garbled), invoices that match the database, the donation keypad across
a restart, its limits, and a provider failure with a retry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from telepay.models import Channel, Invoice, InvoiceKind, InvoiceStatus, Tier
from tests.bot.world import BOT, TIMEOUT, World, until


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    running = World(database_url, tmp_path_factory.mktemp("bot-buyers"))
    yield running
    running.close()
    assert running.telegram.errors == []


@pytest.fixture(scope="module")
def live(world):
    """A live channel with two tiers; returns (channel key, open chat)."""
    owner, open_chat, closed_chat = world.owner_with_pair("Paula")
    form = world.register(owner, open_chat, closed_chat)
    form = world.set_up(owner, form, price="7.50", days="30")
    form = world.answer(owner, form, ["Tier 2", "Price"], "60")
    form = world.answer(owner, form, ["Tier 2", "Duration"], "365")
    world.press(owner, form, "💾 Save all changes", expect="All changes saved")
    with world.session_factory() as session:
        key = session.scalars(select(Channel.key).where(Channel.open_chat_id == open_chat.id)).one()
    until(lambda: len(world.bot_posts(open_chat)) == 1 and len(world.bot_posts(open_chat)[0].buttons) == 2,
          what="post with two tiers")
    return key, open_chat, closed_chat


def test_a_tier_link_gives_an_invoice_for_the_price_in_the_database(world, live):
    key, open_chat, _ = live
    buyer = world.telegram.create_user("Bob", username="bob")
    link = world.bot_posts(open_chat)[0].buttons[1]["url"]
    assert link == f"https://t.me/{BOT}?start={key}-2"
    buyer.open_deep_link(link)
    card = buyer.wait_for_message(timeout=TIMEOUT)
    assert "$60.00" in card.text and "365 days" in card.text
    buyer.press(card, text="💳 Pay $60.00")
    invoice_message = buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT)
    url = invoice_message.buttons[0]["url"]

    with world.session_factory() as session:
        invoice = session.scalars(select(Invoice).where(Invoice.buyer_user_id == buyer.id)).one()
        tier = session.get(Tier, invoice.tier_id)
    assert (invoice.kind, invoice.status, invoice.price_usd, invoice.days) == (
        InvoiceKind.SUBSCRIPTION, InvoiceStatus.PENDING, Decimal("60.00"), 365)
    assert (tier.number, tier.price_usd) == (2, Decimal("60.00"))
    provided = world.nowpayments.invoice(invoice.provider_invoice_id)
    assert provided.order_id == invoice.id and provided.price_amount == Decimal("60.00")
    assert provided.price_currency == "usd" and provided.is_fixed_rate
    assert provided.ipn_callback_url.endswith("/webhooks/nowpayments")
    assert provided.success_url == f"https://t.me/{BOT}?start=paid"
    assert url == invoice.invoice_url

    # Pressing "Pay" again gives the same open invoice, not a second one.
    buyer.press(card, text="💳 Pay $60.00")
    again = buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT)
    assert again.buttons[0]["url"] == url
    with world.session_factory() as session:
        assert len(session.scalars(select(Invoice).where(Invoice.buyer_user_id == buyer.id)).all()) == 1


@pytest.mark.parametrize("payload, expected", [
    ("{key}-3", "doesn't exist"),          # a tier number the channel does not have
    ("{key}-1x", "don't recognise"),       # edited into garbage
    ("nosuchkey1-1", "don't recognise"),   # a channel that does not exist
    ("hello", "don't recognise"),
])
def test_edited_and_garbled_links_are_answered_kindly(world, live, payload, expected):
    key = live[0]
    someone = world.telegram.create_user("Carl")
    someone.open_deep_link(f"https://t.me/{BOT}?start=" + payload.format(key=key))
    reply = someone.wait_for_message(timeout=TIMEOUT)
    assert expected in reply.text
    assert reply.buttons == []


def test_a_provider_failure_gets_an_apology_and_a_retry_button(world, live):
    key = live[0]
    buyer = world.telegram.create_user("Dana")
    buyer.open_deep_link(f"https://t.me/{BOT}?start={key}-1")
    card = buyer.wait_for_message(timeout=TIMEOUT)
    world.nowpayments.fail_next("/v1/invoice", status=503, count=4)  # the first try and its 3 retries
    buyer.press(card, text="💳 Pay $7.50")
    sorry = buyer.wait_for_message(lambda m: "Sorry" in m.text, timeout=TIMEOUT)
    assert "payment provider" in sorry.text and "Traceback" not in sorry.text
    buyer.press(sorry, text="🔄 Try again")
    invoice_message = buyer.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT)
    with world.session_factory() as session:
        invoice = session.scalars(select(Invoice).where(Invoice.buyer_user_id == buyer.id)).one()
    assert invoice.status == InvoiceStatus.PENDING and invoice.price_usd == Decimal("7.50")
    assert invoice_message.buttons[0]["url"] == invoice.invoice_url


def _keys(world, donor, keypad, keys: str) -> None:
    for key in keys:
        label = {".": "."}.get(key, key)
        before = keypad.text
        donor.press(keypad, text=label).wait_for_answer(timeout=TIMEOUT)
        until(lambda: keypad.text != before, what=f"keypad after {key}")


def test_a_donation_survives_a_restart_and_respects_the_limits(world, live):
    key, _, closed_chat = live
    donor = world.telegram.create_user("Dora")
    donate_url = world.bot_posts(closed_chat)[0].buttons[0]["url"]
    assert donate_url == f"https://t.me/{BOT}?start={key}-donate"
    donor.open_deep_link(donate_url)
    keypad = donor.wait_for_message(lambda m: "Donation to" in m.text, timeout=TIMEOUT)

    # Below the minimum: refused with both limits.
    _keys(world, donor, keypad, "4")
    refusal = donor.press(keypad, text="✅ Confirm").wait_for_answer(timeout=TIMEOUT)
    assert "$4.99" in refusal["text"] and "$9,999.99" in refusal["text"]
    # Above the maximum: a fifth whole digit is refused with the limits.
    donor.press(keypad, text="Clear").wait_for_answer(timeout=TIMEOUT)
    until(lambda: "Amount: —" in keypad.text, what="cleared")
    _keys(world, donor, keypad, "9999")
    too_much = donor.press(keypad, text="9").wait_for_answer(timeout=TIMEOUT)
    assert "$9,999.99" in too_much["text"] and "Amount: $9999\n" in keypad.text
    donor.press(keypad, text="Clear").wait_for_answer(timeout=TIMEOUT)
    until(lambda: "Amount: —" in keypad.text, what="cleared")

    _keys(world, donor, keypad, "12.5")
    assert "Amount: $12.5\n" in keypad.text
    world.restart()
    _keys(world, donor, keypad, "0")
    assert "Amount: $12.50\n" in keypad.text
    third = donor.press(keypad, text="9").wait_for_answer(timeout=TIMEOUT)
    assert "two decimals" in third["text"]
    donor.press(keypad, text="✅ Confirm").wait_for_answer(timeout=TIMEOUT)
    invoice_message = donor.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT)
    assert "$12.50" in invoice_message.text
    with world.session_factory() as session:
        invoice = session.scalars(select(Invoice).where(Invoice.buyer_user_id == donor.id)).one()
    assert (invoice.kind, invoice.price_usd, invoice.tier_id) == (InvoiceKind.DONATION, Decimal("12.50"), None)
    assert world.nowpayments.invoice(invoice.provider_invoice_id).price_amount == Decimal("12.50")

    # The keypad is closed now: pressing Confirm again does nothing but say so.
    late = donor.press(keypad, text="✅ Confirm") if keypad.buttons else None
    if late is not None:
        assert "closed" in late.wait_for_answer(timeout=TIMEOUT)["text"]


def test_mysubs_lists_active_subscriptions_with_renew_buttons(world, live):
    from datetime import datetime, timezone

    from telepay.models import Subscription

    key = live[0]
    subscriber = world.telegram.create_user("Sue")
    subscriber.send("/mysubs")
    assert "no active subscriptions" in subscriber.wait_for_message(timeout=TIMEOUT).text
    with world.session_factory.begin() as session:
        channel_id = session.scalars(select(Channel.id).where(Channel.key == key)).one()
        session.add(Subscription(channel_id=channel_id, user_id=subscriber.id,
                                 expires_at=datetime(2030, 1, 31, 12, 0, tzinfo=timezone.utc)))
    subscriber.send("/mysubs")
    listing = subscriber.wait_for_message(timeout=TIMEOUT)
    assert "Paula VIP — until 31 Jan 2030, 12:00 UTC" in listing.text
    subscriber.press(listing, text="🔄 Renew Paula VIP")
    plans = subscriber.wait_for_message(lambda m: "Renew" in m.text, timeout=TIMEOUT)
    assert [b["text"] for b in plans.buttons] == [
        "⭐ 577 Stars · 30 days", "🔁 577 Stars every 30 days (auto-renew)", "$7.50 · 30 days",
        "⭐ 4,616 Stars · 365 days", "$60.00 · 365 days"]
    subscriber.press(plans, text="$7.50 · 30 days")
    assert "$7.50" in subscriber.wait_for_message(lambda m: "Your invoice" in m.text, timeout=TIMEOUT).text
