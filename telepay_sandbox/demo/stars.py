"""Act seven: Telegram Stars. Carol subscribes in Stars with auto-renewal; Dave buys once in
Stars, asks /paysupport for his money back and the operator refunds him with `telepay payments
refund`; a month later Telegram renews Carol's subscription by itself, and once the 21-day
withdrawal hold has passed, Olga's share of Carol's first payment is paid out like any other.

Stars are paid inside the sandbox Telegram (a person's Stars balance, the pre-checkout the bot
answers, `successful_payment`); the shares are followed out to Olga's wallet on the dev chain.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

from telepay_sandbox.demo.money import PayoutSeen, follow_payout
from telepay_sandbox.demo.sell import PRICE, Shop, join_and_check
from telepay_sandbox.demo.stage import Stage
from telepay_sandbox.demo.timeline import Timeline, quote
from telepay_sandbox.telegram import Person
from telepay_sandbox.waiting import until

RATE, FEE = Decimal("0.013"), Decimal("0.10")
STARS = int((Decimal(PRICE) / RATE).to_integral_value(rounding=ROUND_CEILING))  # the automatic price
SHARE = STARS * RATE * (1 - FEE)


def _buyer(stage: Stage, timeline: Timeline, shop: Shop, name: str, balance: int) -> tuple[Person, object]:
    person = stage.telegram.create_user(name.capitalize(), username=name)
    person.stars = balance
    person.open_deep_link(shop.tier_link)
    card = person.wait_for_message(lambda m: "Subscription to" in m.text, timeout=15)
    timeline.say(name, f"holds ⭐ {balance:,}; opens the tier link: [{' | '.join(b['text'] for b in card.buttons)}]")
    return person, card


def _paid(stage: Stage, timeline: Timeline, shop: Shop, name: str, person: Person, target) -> str:
    outcome = person.pay(target)
    if not outcome.paid:
        raise RuntimeError(f"{name}'s Stars payment was {outcome.status}: {outcome.error_message}")
    timeline.say(name, f"pays ⭐ {STARS:,} in Telegram (pre-checkout answered yes): charge {outcome.charge_id[:16]}…")
    welcome = person.wait_for_message(lambda m: "Payment received" in m.text, timeout=15)
    join_and_check(stage, timeline, name, person, shop.vip, welcome.buttons[0]["url"])
    note = shop.olga.wait_for_message(lambda m: "New subscription" in m.text and "Stars" in m.text, timeout=15)
    timeline.say("bot", "to olga: " + " / ".join(note.text.splitlines()))
    return outcome.charge_id


def stars_subscription(stage: Stage, timeline: Timeline, shop: Shop) -> tuple[Person, str]:
    """Carol buys the 30-day tier as a Star subscription; /mysubs says when it renews."""
    carol, card = _buyer(stage, timeline, shop, "carol", 5000)
    carol.press(card, text=f"🔁 {STARS:,} Stars every 30 days (auto-renew)")
    offer = carol.wait_for_message(lambda m: "until you cancel" in m.text, timeout=15)
    link = carol.press(offer, text=f"⭐ Subscribe for {STARS:,} Stars")
    timeline.say("bot", f"to carol: {quote(offer.text)} [{offer.buttons[0]['text']} -> {link}]")
    charge = _paid(stage, timeline, shop, "carol", carol, link)
    carol.send("/mysubs")
    listing = carol.wait_for_message(lambda m: "renews on" in m.text, timeout=15)
    timeline.say("bot", f"to carol: {' / '.join(listing.text.splitlines()[2:3])} [{listing.buttons[0]['text']}]")
    timeline.fact("stars purchase", f"carol ⭐ {STARS:,} as a Star subscription, in “{shop.vip.title}”, "
                                    f"olga's ${SHARE:.2f} held 21 days")
    return carol, charge


def refund_through_paysupport(stage: Stage, timeline: Timeline, shop: Shop) -> None:
    """Dave buys once in Stars, asks for his money back; the operator refunds; access ends."""
    dave, card = _buyer(stage, timeline, shop, "dave", 2000)
    dave.press(card, text=f"⭐ Pay {STARS:,} Stars")
    invoice = dave.wait_for_message(lambda m: m.as_dict().get("invoice") is not None, timeout=15)
    _paid(stage, timeline, shop, "dave", dave, invoice)
    dave.send("/paysupport")
    choices = dave.wait_for_message(lambda m: "which payment" in m.text, timeout=15)
    picked = choices.buttons[0]["text"]
    dave.press(choices, text=picked)
    until(lambda: "What went wrong" in choices.text, "the question")
    dave.send("I bought the wrong channel, please refund me.")
    timeline.say("dave", f"/paysupport, picks [{picked}], writes why")
    alert = stage.operator.wait_for_message(lambda m: "/paysupport" in m.text, timeout=15)
    timeline.say("bot", "to the operator: " + quote(alert.text))
    star_payment = re.search(r"\(stars:(\d+)\)", alert.text).group(1)
    answer = stage.telepay("payments", "refund", star_payment).strip()
    timeline.say("operator", f"telepay payments refund {star_payment} -> {answer}")
    told = dave.wait_for_message(lambda m: "was refunded" in m.text, timeout=15)
    until(lambda: dave.status_in(shop.vip) == "left", "dave's access ended")
    timeline.say("bot", f"to dave: {quote(told.text)}; dave is now “{dave.status_in(shop.vip)}”, "
                        f"holds ⭐ {dave.stars:,}")
    owner = shop.olga.wait_for_message(lambda m: "refunded to the buyer" in m.text, timeout=15)
    timeline.say("bot", "to olga: " + " / ".join(owner.text.splitlines()))
    if dave.stars != 2000 or "cancelled" not in answer:
        raise RuntimeError(f"the refund did not return dave's Stars or cancel the share: {answer}")
    timeline.fact("paysupport refund", f"dave ⭐ {STARS:,} back, removed, olga's held share cancelled")


def month_later(stage: Stage, timeline: Timeline, shop: Shop, carol: Person, charge: str) -> PayoutSeen:
    """Thirty days on: Telegram charges Carol again, and her first share is past its hold."""
    before = _last_payout(stage)
    stage.move_clock(timedelta(days=30, minutes=1))
    timeline.say("clock", f"+30 days: the process's clock now reads {stage.clock.now():%d %b %Y, %H:%M} UTC")
    renewed = carol.wait_for_message(lambda m: "extended until" in m.text, timeout=15)
    charges = stage.telegram.star_subscription(carol, charge)["charge_ids"]
    timeline.say("telegram", f"renews carol's subscription: charge {charges[-1][:16]}…, ⭐ {STARS:,}; "
                             f"carol holds ⭐ {carol.stars:,}")
    timeline.say("bot", f"to carol: {quote(renewed.text)}")
    if carol.status_in(shop.vip) != "member" or len(charges) != 2:
        raise RuntimeError("carol's renewal did not keep her in")
    timeline.fact("stars renewal", f"⭐ {STARS:,} charged again a month later, carol stays in")
    # The share is released by the hold timer, and its payout is the next one ChangeNOW is asked for.
    payout = follow_payout(stage, timeline, shop, before + 1)
    if payout.usd != f"${SHARE:,.2f}":
        raise RuntimeError(f"the released payout is {payout.usd}, carol's share is {SHARE}")
    timeline.fact("stars payout", f"after the hold: {payout.line()}")
    return payout



def _last_payout(stage: Stage) -> int:
    """The highest payout id ChangeNOW has been asked to exchange for (each exchange is tagged)."""
    with stage.changenow.lock:
        tags = [e.user_id for e in stage.changenow.exchanges.values() if e.user_id]
    return max(int(tag.rsplit("-", 1)[1]) for tag in tags if tag.startswith("telepay-payout-"))
