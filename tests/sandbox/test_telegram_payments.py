"""The sandbox's Telegram Stars: invoices, the pre-checkout handshake, renewals, refunds, the ledger."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from telegram import Update

from telepay.clock import ManualClock
from telepay_sandbox.telegram import RateLimits, TelegramSandbox
from tests.sandbox.conftest import RawBotApi
from tests.sandbox.test_telegram_oracle import pay_answering, wait_for_update

MONTH = 2592000
PRICE = [{"label": "Access", "amount": 100}]


def subscription_link(api, amount=100, payload="sub"):
    return api.result("createInvoiceLink", title="Club", description="Monthly", payload=payload,
                      currency="XTR", prices=[{"label": "Month", "amount": amount}],
                      subscription_period=MONTH)


def payments_in(sandbox, kind="successful_payment"):
    return [u["message"][kind] for u in sandbox.updates if kind in u.get("message", {})]


def test_a_paid_invoice_moves_the_stars_and_tells_the_bot(sandbox, api, alice):
    alice.stars = 150
    sent = api.result("sendInvoice", chat_id=alice.id, title="Club", description="30 days",
                      payload="inv-1", currency="XTR", prices=PRICE)
    assert sent["invoice"] == {"title": "Club", "description": "30 days", "start_parameter": "",
                               "currency": "XTR", "total_amount": 100}
    invoice = alice.wait_for_message()
    assert invoice.buttons == [{"text": "Pay ⭐️100", "pay": True}]
    outcome = pay_answering(sandbox, api, alice, invoice)
    assert outcome.paid and alice.stars == 50 and sandbox.bot_star_balance == 100
    [paid] = payments_in(sandbox)
    assert paid == {"currency": "XTR", "total_amount": 100, "invoice_payload": "inv-1",
                    "telegram_payment_charge_id": outcome.charge_id, "provider_payment_charge_id": ""}
    update = next(u for u in sandbox.updates if "successful_payment" in u.get("message", {}))
    parsed = Update.de_json(update, None)
    assert parsed.message.successful_payment.telegram_payment_charge_id == outcome.charge_id


def test_a_short_balance_never_reaches_the_bot(sandbox, api, alice):
    alice.stars = 99
    api.result("sendInvoice", chat_id=alice.id, title="Club", description="d", payload="p",
               currency="XTR", prices=PRICE)
    outcome = alice.pay(alice.wait_for_message())
    assert outcome.status == "insufficient_balance" and alice.stars == 99
    assert not [u for u in sandbox.updates if "pre_checkout_query" in u]


def test_a_refused_or_unanswered_pre_checkout_charges_nothing(sandbox, api, alice):
    alice.stars = 500
    link = api.result("createInvoiceLink", title="Club", description="d", payload="p", currency="XTR",
                      prices=PRICE)
    refused = pay_answering(sandbox, api, alice, link, ok=False, error_message="The price changed.")
    assert (refused.status, refused.error_message) == ("refused", "The price changed.")
    assert alice.pay(link, timeout=0.2).status == "timeout"
    late = wait_for_update(sandbox, "pre_checkout_query", len(sandbox.updates) - 1)
    answer = api("answerPreCheckoutQuery", pre_checkout_query_id=late["id"], ok=True)
    assert answer["error_code"] == 400  # too late: Telegram gave up on it
    assert alice.stars == 500 and sandbox.bot_star_balance == 0 and payments_in(sandbox) == []
    no_reason = api("answerPreCheckoutQuery", pre_checkout_query_id="123", ok=False)
    assert no_reason["ok"] is False


@pytest.mark.parametrize(("change", "error"), [
    ({"currency": "USD"}, "PAYMENT_PROVIDER_INVALID"),
    ({"provider_token": "card-provider"}, "PAYMENT_PROVIDER_INVALID"),
    ({"prices": PRICE * 2}, "STARS_INVOICE_INVALID"),
    ({"prices": [{"label": "x", "amount": 0}]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
    ({"prices": [{"label": "x", "amount": 10001}]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
    ({"payload": "p" * 129}, "INVOICE_PAYLOAD_INVALID"),
    ({"subscription_period": 86400}, "SUBSCRIPTION_PERIOD_INVALID"),
])
def test_invoices_telegram_would_refuse(api, change, error):
    params = {"title": "Club", "description": "d", "payload": "p", "currency": "XTR", "prices": PRICE}
    answer = api("createInvoiceLink", **(params | change))
    assert (answer["ok"], answer["description"]) == (False, f"Bad Request: {error}")


@pytest.fixture
def clocked():
    clock = ManualClock()
    with TelegramSandbox(rate_limits=RateLimits.off(), clock=clock) as running, RawBotApi(running) as api:
        person = running.create_user("Bea")
        person.command("start")
        yield running, api, person, clock
        assert running.errors == []


def test_a_subscription_renews_each_period_until_the_balance_is_short(clocked):
    sandbox, api, bea, clock = clocked
    bea.stars = 250
    first = pay_answering(sandbox, api, bea, subscription_link(api))
    started = sandbox.star_subscription(bea, first.charge_id)["expires_at"]
    clock.advance(timedelta(days=29))
    assert sandbox.charge_due_subscriptions() == 0
    clock.advance(timedelta(days=1, seconds=1))
    assert sandbox.charge_due_subscriptions() == 1
    renewal = payments_in(sandbox)[-1]
    assert renewal["is_recurring"] is True and "is_first_recurring" not in renewal
    assert renewal["subscription_expiration_date"] == started + MONTH
    assert renewal["telegram_payment_charge_id"] != first.charge_id
    assert bea.stars == 50
    clock.advance(timedelta(days=30))
    assert sandbox.charge_due_subscriptions() == 0  # 50 < 100: it lapses, and the bot hears nothing
    state = sandbox.star_subscription(bea, first.charge_id)
    assert state["lapsed"] and len(state["charge_ids"]) == 2 and len(payments_in(sandbox)) == 2
    refused = api("editUserStarSubscription", user_id=bea.id, telegram_payment_charge_id=first.charge_id,
                  is_canceled=False)
    assert refused["description"] == "Bad Request: SUBSCRIPTION_EXPIRED"


def test_cancel_and_resume_decide_whether_the_period_end_charges(clocked):
    sandbox, api, bea, clock = clocked
    bea.stars = 1000
    first = pay_answering(sandbox, api, bea, subscription_link(api))
    assert first.paid and payments_in(sandbox)[0]["is_first_recurring"] is True
    assert pay_answering(sandbox, api, bea, subscription_link(api)).paid  # another link: another one
    edit = dict(user_id=bea.id, telegram_payment_charge_id=first.charge_id)
    api.result("editUserStarSubscription", **edit, is_canceled=True)
    api.result("editUserStarSubscription", **edit, is_canceled=False)
    clock.advance(timedelta(days=30, seconds=1))
    assert sandbox.charge_due_subscriptions() >= 1 and not sandbox.star_subscription(bea, first.charge_id)["lapsed"]
    api.result("editUserStarSubscription", **edit, is_canceled=True)
    clock.advance(timedelta(days=30))
    sandbox.charge_due_subscriptions()
    assert sandbox.star_subscription(bea, first.charge_id)["lapsed"]
    wrong = api("editUserStarSubscription", user_id=bea.id, telegram_payment_charge_id="stxnope",
                is_canceled=True)
    assert wrong["description"] == "Bad Request: SUBSCRIPTION_ID_INVALID"


def test_the_background_renewal_follows_the_clock(clocked):
    sandbox, api, bea, clock = clocked
    bea.stars = 200
    pay_answering(sandbox, api, bea, subscription_link(api))
    clock.advance(timedelta(days=30, seconds=1))
    deadline = time.monotonic() + 5
    while len(payments_in(sandbox)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(payments_in(sandbox)) == 2  # nobody called charge_due_subscriptions


def test_a_refund_returns_the_stars_once_and_the_ledger_shows_both(sandbox, api, alice):
    alice.stars = 300
    link = api.result("createInvoiceLink", title="Club", description="d", payload="one", currency="XTR",
                      prices=PRICE)
    paid = pay_answering(sandbox, api, alice, link)
    charge = dict(user_id=alice.id, telegram_payment_charge_id=paid.charge_id)
    assert api("refundStarPayment", user_id=alice.id + 1, telegram_payment_charge_id=paid.charge_id)[
        "description"] == "Bad Request: CHARGE_ID_INVALID"
    api.result("refundStarPayment", **charge)
    assert api("refundStarPayment", **charge)["description"] == "Bad Request: CHARGE_ALREADY_REFUNDED"
    assert alice.stars == 300 and api.result("getMyStarBalance") == {"amount": 0}
    [refunded] = payments_in(sandbox, "refunded_payment")
    assert refunded["telegram_payment_charge_id"] == paid.charge_id and refunded["total_amount"] == 100
    incoming, outgoing = api.result("getStarTransactions")["transactions"]
    assert incoming["id"] == outgoing["id"] == paid.charge_id
    assert incoming["source"]["invoice_payload"] == "one" and outgoing["receiver"]["user"]["id"] == alice.id
    assert api.result("getStarTransactions", offset=1, limit=1)["transactions"] == [outgoing]
