"""Acts three and four: the owner's payout goes out through a ChangeNOW exchange funded by the
host wallet on the dev chain; a donor gives through the keypad and that payout goes out too.

A payout is watched from the outside, where it leaves traces: the exchange the ChangeNOW sandbox
was asked for (tagged with the payout's id), the host wallet's transfer to its pay-in address on
the dev chain, the exchange's own transfer to the owner, and the owner's balance before and
after. Then the operator's view, `telepay payouts show`, says the same.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal

from telepay_sandbox.demo.sell import Shop, pay
from telepay_sandbox.demo.stage import Stage
from telepay_sandbox.waiting import until
from telepay_sandbox.demo.timeline import Timeline, amount, quote
from telepay_sandbox.changenow_exchanges import TERMINAL
from telepay_sandbox.telegram import Person


@dataclass(frozen=True)
class PayoutSeen:
    payout_id: int
    exchange_id: str
    funding_tx: str
    payout_tx: str
    usd: str
    usdt: Decimal

    def line(self) -> str:
        return (f"#{self.payout_id}: {self.usd} -> {amount(self.usdt, 'USDT')} (exchange {self.exchange_id}, "
                f"funding tx {self.funding_tx}, payout tx {self.payout_tx})")


def follow_payout(stage: Stage, timeline: Timeline, shop: Shop, payout_id: int) -> PayoutSeen:
    """Watch one payout from quote to the owner's wallet; raise if it does not finish."""
    exchange = until(lambda: stage.exchange_for(payout_id), f"payout #{payout_id}'s exchange")
    timeline.say("changenow", f"exchange {exchange.id} for payout #{payout_id}: "
                              f"{amount(exchange.expected_from, 'ETH')} -> {amount(exchange.expected_to, 'USDT')} "
                              f"(fixed rate), pay-in address {exchange.payin_address}")
    funding = until(lambda: stage.chain.transfers_to(exchange.payin_address, "eth"), "the host wallet's funding")[0]
    source = "host wallet" if funding.from_address == stage.chain.host_wallet.address else funding.from_address
    timeline.say("chain", f"{source} sends {amount(funding.amount, 'ETH')} to the pay-in address: tx {funding.tx_hash}")
    until(lambda: exchange.status in TERMINAL, f"exchange {exchange.id} to end", timeout=30)
    if exchange.status != "finished":
        raise RuntimeError(f"exchange {exchange.id} ended {exchange.status}")
    timeline.say("changenow", f"exchange {exchange.id}: {' -> '.join(exchange.history)}; sent "
                              f"{amount(exchange.amount_to, 'USDT')} to olga: tx {exchange.payout_hash}")
    before, after = shop.balance, stage.usdt(shop.wallet)
    if after - before != exchange.amount_to:
        raise RuntimeError(f"olga's balance moved by {after - before}, the exchange sent {exchange.amount_to}")
    shop.balance = after
    timeline.say("chain", f"olga's wallet {shop.wallet}: {amount(before, 'USDT')} -> {amount(after, 'USDT')}")
    shown = _finished_in_product(stage, payout_id)
    usd = f"${Decimal(shown['amount_usd']):,.2f}"
    recorded_tx = shown.get("transfer", "").split()[-1:]
    timeline.say("operator", f"telepay payouts show {payout_id} -> {shown['status']}: {usd} -> "
                             f"{amount(Decimal(shown['to_amount']), shown['to_currency'].upper())}, exchange "
                             f"{shown['exchange_id']}, transfer {''.join(recorded_tx)}")
    # The product's own record names the same exchange and the same transaction the chain has.
    if shown["exchange_id"] != exchange.id or recorded_tx != [funding.tx_hash]:
        raise RuntimeError(f"payout #{payout_id} records exchange {shown['exchange_id']} and transfer "
                           f"{recorded_tx}; ChangeNOW has {exchange.id}, the chain {funding.tx_hash}")
    return PayoutSeen(payout_id, exchange.id, funding.tx_hash, exchange.payout_hash, usd, exchange.amount_to)


def _finished_in_product(stage: Stage, payout_id: int, timeout: float = 20.0) -> dict[str, str]:
    """`telepay payouts show` until the product itself records the payout finished."""
    deadline = time.monotonic() + timeout
    while True:
        output = stage.telepay("payouts", "show", str(payout_id))
        shown = dict(line.split(None, 1) for line in output.splitlines() if len(line.split(None, 1)) == 2)
        if shown.get("status") == "finished" or time.monotonic() > deadline:
            if shown.get("status") != "finished":
                raise TimeoutError(f"payout #{payout_id} is still {shown.get('status')}")
            return shown
        time.sleep(0.3)


def donor_gives(stage: Stage, timeline: Timeline, shop: Shop, donor: Person, who: str, dollars: str) -> PayoutSeen:
    """The donor taps Donate in the private channel, types the amount on the keypad and pays."""
    donor.open_deep_link(shop.donate_link)
    keypad = donor.wait_for_message(lambda m: "Donation to" in m.text, timeout=15)
    timeline.say(who, f"taps Donate in “Olga's VIP”; bot: {quote(keypad.text)} with a keypad")
    for key in dollars:
        before = keypad.text
        donor.press(keypad, text=key).wait_for_answer(timeout=15)
        until(lambda: keypad.text != before, f"the keypad after {key}")
    shown = re.search(r"Amount: (\S+)", keypad.text).group(1)
    timeline.say(who, f"presses {', '.join(dollars)} -> “Amount: {shown}”, then ✅ Confirm")
    donor.press(keypad, text="✅ Confirm").wait_for_answer(timeout=15)
    invoice = donor.wait_for_message(lambda m: "Your invoice" in m.text, timeout=15)
    timeline.say("bot", f"to {who}: {quote(invoice.text)} [{invoice.buttons[0]['text']}]")
    pay(stage, timeline, who, invoice)
    thanks = donor.wait_for_message(lambda m: "Thank you" in m.text, timeout=15)
    timeline.say("bot", f"to {who}: {quote(thanks.text)}")
    note = shop.olga.wait_for_message(lambda m: "New donation" in m.text, timeout=15)
    timeline.say("bot", "to olga: " + " / ".join(note.text.splitlines()))
    payout = follow_payout(stage, timeline, shop, int(re.search(r"payout #(\d+)", note.text).group(1)))
    timeline.fact("donation", f"${Decimal(dollars):,.2f} from {who} through the keypad; payout {payout.line()}")
    return payout
