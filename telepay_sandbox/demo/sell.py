"""Acts one and two: an owner sets up shop; a buyer pays and is let in; the owner hears of it.

Also `pay`, how any invoice in the story is paid: the buyer pays on NOWPayments' page and the
sandbox delivers the signed IPNs to the running process, shown one by one with its answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from telepay_sandbox.demo.stage import Stage, press
from telepay_sandbox.waiting import until
from telepay_sandbox.demo.timeline import Timeline, amount, quote
from telepay_sandbox.nowpayments import Delivery
from telepay_sandbox.telegram import ChatHandle, Person

PRICE, DAYS = "25.00", "30"


@dataclass
class Shop:
    olga: Person
    news: ChatHandle
    vip: ChatHandle
    wallet: str  # Olga's payout address on the dev chain
    tier_link: str
    donate_link: str
    balance: Decimal  # USDT in Olga's wallet, as last seen


def owner_sets_up(stage: Stage, timeline: Timeline) -> Shop:
    """Olga registers a public and a private channel, a tier and a USDT (ERC-20) wallet."""
    telegram = stage.telegram
    olga = telegram.create_user("Olga", username="olga")
    news = telegram.create_channel("Olga's News", username="olga_news", creator=olga)
    vip = telegram.create_channel("Olga's VIP", creator=olga)
    for chat in (news, vip):
        telegram.add_admin(chat, telegram.bot)
    wallet = stage.chain.new_account().address
    timeline.say("olga", "makes the bot an admin of @olga_news (public) and “Olga's VIP” (private)")
    olga.send("/start")
    menu = olga.wait_for_message(lambda m: "Welcome" in m.text, timeout=15)
    press(olga, menu, "➕ Add channels", "send me the open channel")
    olga.send("@olga_news")
    olga.wait_for_message(lambda m: "Open channel" in m.text, timeout=15)
    olga.forward_to_bot(vip.post("Welcome, members!"))
    timeline.say("olga", "names @olga_news, forwards a post from “Olga's VIP”")
    timeline.say("bot", "to olga: " + quote(olga.wait_for_message(lambda m: "Registered" in m.text, timeout=15).text))
    form = olga.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=15)
    for field, answer in (("Price", PRICE), ("Duration", DAYS)):
        press(olga, form, "Tier 1: —" if field == "Price" else f"Tier 1: ${PRICE} · ? days", "What would you")
        press(olga, form, field, "Send" if field == "Price" else "How many days")
        olga.send(answer)
        form = olga.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=15)
    press(olga, form, "💱 Currency", "Which currency")
    press(olga, form, "Tether USDT (ERC-20)", "Unsaved changes")
    press(olga, form, "👛 Address", "Send your payout address")
    olga.send(wallet)
    form = olga.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=15)
    timeline.say("olga", f"tier 1: ${PRICE} for {DAYS} days; payouts (instant) in USDT (ERC-20) to {wallet}")
    press(olga, form, "💾 Save all changes", "Please confirm your new payout address")
    press(olga, form, "✅ Yes, save all changes", "All changes saved")
    timeline.say("bot", "to olga: " + quote(olga.wait_for_message(lambda m: "Security notice" in m.text,
                                                                   timeout=15).text))
    timeline.fact("owner registered", f"@olga_news + “Olga's VIP”, ${PRICE}/{DAYS} days, USDT (ERC-20) to {wallet}")

    sub = until(lambda: next((m for m in news.messages() if m.from_bot), None), "the subscribe post")
    timeline.say("bot", f"posts in @olga_news: {quote(sub.text)} [{sub.buttons[0]['text']} -> {sub.buttons[0]['url']}]")
    donate = until(lambda: next((m for m in vip.messages() if m.from_bot), None), "the donate post")
    timeline.say("bot", f"posts in “Olga's VIP”: {quote(donate.text)} "
                        f"[{donate.buttons[0]['text']} -> {donate.buttons[0]['url']}]")
    timeline.fact("posts", "subscribe post in @olga_news, donate post in “Olga's VIP”")
    return Shop(olga, news, vip, wallet, sub.buttons[0]["url"], donate.buttons[0]["url"], stage.usdt(wallet))


def pay(stage: Stage, timeline: Timeline, who: str, invoice_message, delivery: Delivery | None = None) -> list:
    """`who` pays the invoice behind the message's button; the IPN deliveries, as recorded."""
    provider_invoice = re.search(r"/invoice/(\d+)", invoice_message.buttons[0]["url"]).group(1)
    payment_id = stage.nowpayments.pay(provider_invoice, delivery=delivery)
    payment = stage.nowpayments.payment(payment_id)
    timeline.say(who, f"pays {amount(payment.pay_amount, payment.pay_currency.upper())} on NOWPayments "
                      f"invoice {provider_invoice} (payment {payment_id})")
    records = stage.nowpayments.ipns_for(payment_id)
    for record in records:
        answer = (record.answer or b"").decode(errors="replace")
        timeline.say("nowpay", f"IPN {record.status:<10} -> {record.status_code} "
                               f"{'duplicate' if 'duplicate' in answer else 'accepted'}")
    return records


def buyer_pays(stage: Stage, timeline: Timeline, shop: Shop) -> tuple[Person, int]:
    """Bob buys tier 1; the IPNs come with a repeat and a late one; he is let in; Olga is told.
    Returns Bob and the payout the sale started."""
    bob = stage.telegram.create_user("Bob", username="bob")
    bob.open_deep_link(shop.tier_link)
    card = bob.wait_for_message(timeout=15)
    timeline.say("bob", "opens the tier link; bot: " + quote(card.text))
    bob.press(card, text=f"💳 Pay ${PRICE}")
    invoice = bob.wait_for_message(lambda m: "Your invoice" in m.text, timeout=15)
    timeline.say("bot", f"to bob: {quote(invoice.text)} [{invoice.buttons[0]['text']} -> "
                        f"{invoice.buttons[0]['url']}]")
    timeline.fact("invoice", f"${PRICE} for {DAYS} days, {invoice.buttons[0]['url']}")

    # waiting, confirming, confirming again (a repeat), sending, finished, then confirmed (late).
    records = pay(stage, timeline, "bob", invoice, Delivery(order=[0, 1, 1, 3, 4, 2]))
    duplicates = sum(1 for r in records if b"duplicate" in (r.answer or b""))
    accepted = sum(1 for r in records if r.status_code == 200) - duplicates
    timeline.fact("IPNs", f"{len(records)} delivered: {accepted} accepted, {duplicates} duplicate, "
                          f"“{records[-1].status}” arrived late")

    welcome = bob.wait_for_message(lambda m: "Payment received" in m.text, timeout=15)
    link = welcome.buttons[0]["url"]
    timeline.say("bot", f"to bob: {quote(welcome.text)} [{welcome.buttons[0]['text']} -> {link}]")
    join_and_check(stage, timeline, "bob", bob, shop.vip, link)
    timeline.fact("join approved", f"bob in “Olga's VIP”, his link {link} revoked")

    note = shop.olga.wait_for_message(lambda m: "New subscription" in m.text, timeout=15)
    timeline.say("bot", "to olga: " + " / ".join(note.text.splitlines()))
    payout_id = int(re.search(r"payout #(\d+)", note.text).group(1))
    share = re.search(r"share: (\S+)", note.text).group(1)
    timeline.fact("owner notified", f"“New subscription”, share {share}, payout #{payout_id} started")
    return bob, payout_id


def join_and_check(stage: Stage, timeline: Timeline, who: str, person: Person, vip: ChatHandle, link: str) -> None:
    """The person opens their link; the bot approves the request and revokes the link."""
    timeline.say(who, f"opens the link: join {person.join(link)}")
    until(lambda: person.status_in(vip) == "member", "the join request approved")
    until(lambda: any(item["invite_link"] == link and item["is_revoked"]
                      for item in stage.telegram.invite_links(vip)), "the link revoked")
    timeline.say("bot", f"approves {who}'s join request to “{vip.title}”, then revokes the link")
