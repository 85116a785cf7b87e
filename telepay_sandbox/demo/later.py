"""Acts five and six: a month passes (the offset clock moves), the reminders and the removal
come from the sweep, and the buyer renews through the Renew button and is let in again."""

from __future__ import annotations

from datetime import timedelta

from telepay_sandbox.demo.money import follow_payout
from telepay_sandbox.demo.sell import DAYS, PRICE, Shop, join_and_check, pay
from telepay_sandbox.demo.stage import Stage
from telepay_sandbox.waiting import until
from telepay_sandbox.demo.timeline import Timeline, quote
from telepay_sandbox.telegram import Person


def _move(stage: Stage, timeline: Timeline, delta: timedelta, why: str) -> None:
    stage.move_clock(delta)
    timeline.say("clock", f"{why}: the process's clock now reads {stage.clock.now():%d %b %Y, %H:%M} UTC")


def month_passes(stage: Stage, timeline: Timeline, shop: Shop, bob: Person):
    """Reminders 3 days and 1 day before the end, then the removal; returns the ended message."""
    reminders = []
    for days, left in ((27, "3 days"), (2, "1 day")):
        _move(stage, timeline, timedelta(days=days), f"+{days} days")
        reminder = bob.wait_for_message(lambda m: "ends in" in m.text, timeout=15)
        if f"ends in {left}" not in reminder.text:
            raise RuntimeError(f"expected a reminder of {left}, got {reminder.text!r}")
        timeline.say("bot", f"to bob: {quote(reminder.text)} [{reminder.buttons[0]['text']}]")
        reminders.append(f"“ends in {left}”")
    timeline.fact("reminder", ", ".join(reminders) + ", each with a Renew button")

    _move(stage, timeline, timedelta(days=1, minutes=1), "+1 day: bob's 30 days are over")
    ended = bob.wait_for_message(lambda m: "has ended" in m.text, timeout=15)
    until(lambda: bob.status_in(shop.vip) == "left", "bob removed from “Olga's VIP”")
    timeline.say("bot", f"removes bob from “Olga's VIP” (ban, then unban: he may come back); "
                        f"bob is now “{bob.status_in(shop.vip)}”")
    timeline.say("bot", f"to bob: {quote(ended.text)} [{ended.buttons[0]['text']}]")
    timeline.fact("removal", f"bob removed, told “your access ended” with [{ended.buttons[0]['text']}]")
    return ended


def buyer_renews(stage: Stage, timeline: Timeline, shop: Shop, bob: Person, ended) -> None:
    """Bob taps Renew, picks the plan, pays, gets a fresh invite and is back in; Olga is paid."""
    bob.press(ended, text=ended.buttons[0]["text"])
    plans = bob.wait_for_message(lambda m: "pick a plan" in m.text, timeout=15)
    timeline.say("bob", f"taps Renew; bot: {quote(plans.text)} [{' | '.join(b['text'] for b in plans.buttons)}]")
    bob.press(plans, text=f"${PRICE} · {DAYS} days")
    invoice = bob.wait_for_message(lambda m: "Your invoice" in m.text, timeout=15)
    timeline.say("bot", f"to bob: {quote(invoice.text)} [{invoice.buttons[0]['text']}]")
    pay(stage, timeline, "bob", invoice)
    welcome = bob.wait_for_message(lambda m: "Payment received" in m.text, timeout=15)
    link = welcome.buttons[0]["url"]
    timeline.say("bot", f"to bob: {quote(welcome.text)} [{welcome.buttons[0]['text']} -> {link}]")
    join_and_check(stage, timeline, "bob", bob, shop.vip, link)
    note = shop.olga.wait_for_message(lambda m: "New subscription" in m.text, timeout=15)
    timeline.say("bot", "to olga: " + " / ".join(note.text.splitlines()))
    payout = follow_payout(stage, timeline, shop, int(note.text.split("payout #")[1].split()[0]))
    timeline.fact("renewal", f"${PRICE} paid through Renew, fresh invite {link}, bob back in; payout {payout.line()}")
