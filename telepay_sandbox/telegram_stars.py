"""The sandbox's Telegram Stars ledger: balances, invoices, charges, Star subscriptions, transactions.

Plain records kept on `World.stars` and changed only under the world lock (see
`telegram_payments` for what paying, renewing and refunding do with them). The bot's balance is
what people paid it minus what it refunded, as on Telegram.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

# Telegram allows exactly one subscription period: 30 days.
SUBSCRIPTION_PERIOD = 2592000


@dataclass
class StarInvoice:
    """An invoice the bot sent (a message) or made a link for; `slug` names a link."""

    title: str
    description: str
    payload: str
    amount: int
    subscription_period: int | None = None
    chat_id: int | None = None       # sendInvoice: where the invoice message is
    message_id: int | None = None
    slug: str | None = None          # createInvoiceLink: https://t.me/$<slug>
    start_parameter: str = ""


@dataclass
class StarCharge:
    """One payment by a person: the first of a subscription, a renewal, or a one-off."""

    charge_id: str
    user_id: int
    amount: int
    payload: str
    date: int
    subscription_id: int | None = None
    is_recurring: bool = False
    refunded: bool = False


@dataclass
class StarSubscription:
    """A person's 30-day Star subscription bought through an invoice link."""

    id: int
    user_id: int
    invoice: StarInvoice
    expires_at: int
    charge_ids: list[str] = field(default_factory=list)
    canceled_by_bot: bool = False
    lapsed: bool = False             # a renewal failed (balance short) or it was cancelled and ran out


@dataclass
class StarTransactionRecord:
    id: str
    amount: int
    date: int
    user_id: int
    incoming: bool
    payload: str
    subscription_period: int | None = None


@dataclass
class PreCheckout:
    id: str
    user_id: int
    answer: dict | None = None


class StarsLedger:
    def __init__(self) -> None:
        self.balances: dict[int, int] = {}             # people's Stars
        self.bot_balance = 0
        self.invoices_by_message: dict[tuple[int, int], StarInvoice] = {}
        self.invoices_by_slug: dict[str, StarInvoice] = {}
        self.charges: dict[str, StarCharge] = {}
        self.subscriptions: dict[int, StarSubscription] = {}
        self.transactions: list[StarTransactionRecord] = []
        self.pre_checkouts: dict[str, PreCheckout] = {}
        self._subscription_ids = itertools.count(1)
        self._query_ids = itertools.count(9_000_000_000_000_000_001)

    def new_charge_id(self) -> str:
        # Stars charge ids look like "stxXXXX..." on Telegram.
        while (charge_id := "stx" + secrets.token_urlsafe(24)) in self.charges:
            pass
        return charge_id

    def new_slug(self) -> str:
        return secrets.token_urlsafe(12)

    def new_subscription_id(self) -> int:
        return next(self._subscription_ids)

    def new_query_id(self) -> str:
        return str(next(self._query_ids))

    def subscription_of(self, user_id: int, charge_id: str) -> StarSubscription | None:
        charge = self.charges.get(charge_id)
        if charge is None or charge.user_id != user_id or charge.subscription_id is None:
            return None
        return self.subscriptions[charge.subscription_id]

    def active_subscription(self, user_id: int, invoice: StarInvoice, now: int) -> StarSubscription | None:
        for subscription in self.subscriptions.values():
            if (subscription.user_id == user_id and subscription.invoice is invoice
                    and not subscription.lapsed and subscription.expires_at > now):
                return subscription
        return None
