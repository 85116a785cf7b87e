"""The operator's view of one Telegram user (`telepay subscribers show USER`), read-only.

Everything the database knows about the person, as plain rows: the subscriptions they hold, the
invites made for them, their invoices, what they paid (crypto and Stars), the payouts their
payments feed, where they wait in the delivery queue, /paysupport requests, and the jobs about
them (direct messages, invites, reminders, removals, Stars refunds); for an owner, the channels
they registered and the sale notices sent to them.

TelePay keeps no user table: a user is known by the rows that name their Telegram id. An
@username is only what the buyer was called when they made an invoice, and Telegram lets names
move between accounts, so a name may lead to several ids; the newest holder is listed first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Integer, String, func, or_, select
from sqlalchemy.orm import Session

from telepay.errors import NotFound
from telepay.models import (
    Accumulation, Channel, Invite, InviteStatus, Invoice, Job, Payment, Payout, StarPayment, Subscription,
    SupportRequest, Tier,
)
from telepay.services.fulfilment import INVITE_JOB
from telepay.services.lifecycle.sweep import EXPIRE_JOB, REMIND_JOB
from telepay.services.messages import DIRECT_JOB
from telepay.services.notifications import NOTIFY_JOB
from telepay.services.stars.refunds import REFUND_JOB


class AmbiguousUser(NotFound):
    """An @username held by several Telegram ids; `candidates` is (id, last seen), newest first."""

    code = "ambiguous"

    def __init__(self, message: str, candidates: list[tuple[int, datetime]]):
        super().__init__(message)
        self.candidates = candidates


@dataclass(frozen=True)
class SubscriptionLine:
    id: int
    channel_id: int
    channel_title: str
    tier: int | None            # the tier number of the invoice that last extended it
    status: str
    started_at: datetime
    expires_at: datetime
    star_renews: bool | None    # None: not a Star subscription


@dataclass(frozen=True)
class InviteLine:
    id: int
    invoice_id: str | None
    chat_id: int
    status: str
    link: str | None
    created_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    waiting_since: datetime | None


@dataclass(frozen=True)
class InvoiceLine:
    id: str
    kind: str
    method: str
    channel_id: int
    tier: int | None
    price_usd: Decimal
    price_stars: int | None
    status: str
    created_at: datetime
    completed_at: datetime | None
    access_delivered_at: datetime | None


@dataclass(frozen=True)
class PaymentLine:
    """A payment of either rail: crypto (NOWPayments) or Stars (its Telegram charge id)."""

    rail: str                   # "crypto" | "stars"
    id: int
    provider_id: str
    invoice_id: str | None
    status: str
    amount: str                 # what was paid, in what (e.g. "0.0123 ETH", "250 XTR")
    usd: Decimal | None
    owner_share_usd: Decimal | None
    review: str | None
    at: datetime


@dataclass(frozen=True)
class PayoutLine:
    id: int
    kind: str
    status: str
    amount_usd: Decimal
    payment_ids: tuple[int, ...]  # this user's payments it pays (or holds, for a batch)


@dataclass(frozen=True)
class JobLine:
    id: int
    kind: str
    state: str
    created_at: datetime
    finished_at: datetime | None
    text: str | None            # a message's text, first line
    last_error: str | None


@dataclass(frozen=True)
class OwnedChannel:
    id: int
    title: str
    status: str


@dataclass
class UserView:
    user_id: int
    usernames: list[str] = field(default_factory=list)
    owned: list[OwnedChannel] = field(default_factory=list)  # channels they registered (owners are users too)
    subscriptions: list[SubscriptionLine] = field(default_factory=list)
    invites: list[InviteLine] = field(default_factory=list)
    invoices: list[InvoiceLine] = field(default_factory=list)
    payments: list[PaymentLine] = field(default_factory=list)
    payouts: list[PayoutLine] = field(default_factory=list)
    waiting: list[InviteLine] = field(default_factory=list)
    support: list[SupportRequest] = field(default_factory=list)
    jobs: list[JobLine] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return bool(self.subscriptions or self.invites or self.invoices or self.payments or self.support
                    or self.jobs or self.owned)


def resolve_user(session: Session, ref: str) -> int:
    """A Telegram id from `ref` (a number, or @username as given on an invoice); NotFound otherwise."""
    ref = ref.strip()
    if ref.lstrip("-").isdigit():
        return int(ref)
    name = ref.removeprefix("@")
    if not name:
        raise NotFound("give a numeric Telegram id or an @username")
    rows = session.execute(
        select(Invoice.buyer_user_id, func.max(Invoice.created_at).label("seen"))
        .where(func.lower(Invoice.buyer_username) == name.lower())
        .group_by(Invoice.buyer_user_id).order_by(func.max(Invoice.created_at).desc())).all()
    if not rows:
        raise NotFound(f"no user @{name}: no invoice was ever made under that name")
    if len(rows) > 1:
        raise AmbiguousUser(f"@{name} was used by {len(rows)} Telegram users", [(r[0], r[1]) for r in rows])
    return int(rows[0][0])


def show_user(session: Session, user_id: int) -> UserView:
    """Everything about one Telegram user; NotFound when no row names them."""
    view = UserView(user_id)
    invoices = list(session.scalars(select(Invoice).where(Invoice.buyer_user_id == user_id)
                                    .order_by(Invoice.created_at, Invoice.id)))
    tiers = _tier_numbers(session, {i.tier_id for i in invoices if i.tier_id is not None})
    view.usernames = sorted({i.buyer_username for i in invoices if i.buyer_username})
    view.invoices = [InvoiceLine(i.id, i.kind.value, i.method.value, i.channel_id, tiers.get(i.tier_id or 0),
                                 i.price_usd, i.price_stars, i.status.value, i.created_at, i.completed_at,
                                 i.access_delivered_at) for i in invoices]
    by_invoice = {i.id: i for i in invoices}
    view.subscriptions = _subscriptions(session, user_id, by_invoice, tiers)
    view.invites = [_invite(i) for i in session.scalars(select(Invite).where(Invite.user_id == user_id)
                                                        .order_by(Invite.created_at, Invite.id))]
    view.waiting = [i for i in view.invites if i.status in (InviteStatus.WAITING, InviteStatus.REVIEW)]
    payments = list(session.scalars(select(Payment).where(Payment.invoice_id.in_(list(by_invoice)))
                                    .order_by(Payment.created_at, Payment.id))) if by_invoice else []
    stars = list(session.scalars(select(StarPayment).where(StarPayment.user_id == user_id)
                                 .order_by(StarPayment.received_at, StarPayment.id)))
    view.payments = [_crypto(p) for p in payments if not _is_stars(p, stars)] + [_stars(s) for s in stars]
    view.payments.sort(key=lambda line: line.at)
    view.payouts = _payouts(session, [p.id for p in payments])
    view.support = list(session.scalars(select(SupportRequest).where(SupportRequest.user_id == user_id)
                                        .order_by(SupportRequest.created_at)))
    view.owned = [OwnedChannel(c.id, c.closed_title, c.status.value) for c in session.scalars(
        select(Channel).where(Channel.owner_user_id == user_id).order_by(Channel.id))]
    view.jobs = _jobs(session, user_id, list(by_invoice), [s.id for s in view.subscriptions],
                      [c.id for c in view.owned])
    if not view.known:
        raise NotFound(f"no such user {user_id}: no invoice, subscription, invite, payment or message names them")
    return view


def _tier_numbers(session: Session, tier_ids: set[int]) -> dict[int, int]:
    if not tier_ids:
        return {}
    return {tier_id: number for tier_id, number in session.execute(select(Tier.id, Tier.number)
                                                                   .where(Tier.id.in_(tier_ids)))}


def _subscriptions(session: Session, user_id: int, invoices: dict[str, Invoice],
                   tiers: dict[int, int]) -> list[SubscriptionLine]:
    rows = session.execute(select(Subscription, Channel.closed_title)
                           .join(Channel, Channel.id == Subscription.channel_id)
                           .where(Subscription.user_id == user_id).order_by(Subscription.started_at)).all()
    lines = []
    for s, title in rows:
        last = invoices.get(s.last_invoice_id or "")
        tier = tiers.get(last.tier_id or 0) if last is not None else None
        lines.append(SubscriptionLine(s.id, s.channel_id, title, tier, s.status.value, s.started_at, s.expires_at,
                                      s.star_renews if s.star_charge_id else None))
    return lines


def _invite(i: Invite) -> InviteLine:
    return InviteLine(i.id, i.invoice_id, i.chat_id, i.status.value, i.link, i.created_at, i.used_at, i.revoked_at,
                      i.waiting_since)


def _is_stars(payment: Payment, stars: list[StarPayment]) -> bool:
    """A fulfilled Stars payment also has a payment row (fulfilment's); it is shown once, as Stars."""
    return any(s.payment_id == payment.id for s in stars)


def _crypto(p: Payment) -> PaymentLine:
    paid = f"{p.actually_paid.normalize():f} {(p.pay_currency or '').upper()}" if p.actually_paid is not None else "-"
    return PaymentLine("crypto", p.id, p.provider_payment_id, p.invoice_id, p.status.value, paid,
                       p.actually_paid_usd, p.owner_share_usd, p.needs_review, p.created_at)


def _stars(s: StarPayment) -> PaymentLine:
    return PaymentLine("stars", s.id, s.charge_id, s.invoice_id, s.status.value, f"{s.stars} XTR", s.usd_value,
                       s.share_usd, s.needs_review, s.received_at)


def _payouts(session: Session, payment_ids: list[int]) -> list[PayoutLine]:
    if not payment_ids:
        return []
    fed: dict[int, set[int]] = {}
    links = list(session.execute(select(Payment.payout_id, Payment.id).where(
        Payment.id.in_(payment_ids), Payment.payout_id.is_not(None))))
    links += session.execute(select(Accumulation.payout_id, Accumulation.payment_id).where(
        Accumulation.payment_id.in_(payment_ids), Accumulation.payout_id.is_not(None))).all()
    for payout_id, payment_id in links:
        fed.setdefault(payout_id, set()).add(payment_id)
    payouts = session.scalars(select(Payout).where(Payout.id.in_(list(fed))).order_by(Payout.id))
    return [PayoutLine(p.id, p.kind.value, p.status.value, p.amount_usd, tuple(sorted(fed[p.id]))) for p in payouts]


def _jobs(session: Session, user_id: int, invoice_ids: list[str], subscription_ids: list[int],
          owned_ids: list[int]) -> list[JobLine]:
    """Jobs about the user. The payload is JSON: matched by the key each kind names its subject with."""
    payload = Job.payload
    about = [(Job.kind == DIRECT_JOB) & (payload["chat_id"].astext == str(user_id)),
             (Job.kind == REFUND_JOB) & (payload["user_id"].astext == str(user_id))]
    if invoice_ids:
        about.append((Job.kind == INVITE_JOB) & payload["invoice_id"].astext.cast(String).in_(invoice_ids))
    if subscription_ids:
        about.append(Job.kind.in_([EXPIRE_JOB, REMIND_JOB])
                     & payload["subscription_id"].astext.cast(Integer).in_(subscription_ids))
    if owned_ids:  # an owner's sale notices go to the channel's owner
        about.append((Job.kind == NOTIFY_JOB) & payload["channel_id"].astext.cast(Integer).in_(owned_ids))
    rows = session.scalars(select(Job).where(or_(*about)).order_by(Job.created_at, Job.id))
    return [JobLine(j.id, j.kind, j.state.value, j.created_at, j.finished_at,
                    (j.payload.get("text") or "").splitlines()[0][:100] if j.payload.get("text") else None,
                    j.last_error) for j in rows]
