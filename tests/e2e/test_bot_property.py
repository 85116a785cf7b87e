"""A property of the running bot (issue 13): random interleavings of what owners, buyers and
strangers do — forged and stale button data naming other people's channels, double presses,
a slow payment provider, payments, and the bot's rights in a channel changing mid-flow — and
afterwards:

* nothing changed on a channel by anyone but its owner (settings, tiers, audit log, posts asked);
* no handler error went unhandled (the process log has none);
* no conversation is stuck: everybody who acted gets the menu on /start;
* every paying buyer has their invite, or waits in the visible delivery queue; once the rights
  are back, nobody waits.

Each example uses new people and new channel pairs in one `telepay run`, so examples do not
disturb one another. The number of examples is small (each one drives the real process).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from telepay.models import (
    AuditLog, Channel, ChannelStatus, Invite, InviteStatus, Invoice, InvoiceStatus, Job, JobState, Tier,
)
from telepay.services.delivery import delivery_queue
from tests.bot.world import BOT, GOOD_TRX, TIMEOUT, until
from tests.e2e.test_authority import AuthorityWorld

EXAMPLES = 30
_n = itertools.count(1)
DELIVERED = (InviteStatus.SENT, InviteStatus.USED, InviteStatus.UNDELIVERED)

FORGED = [
    "ch:{cid}", "ch:{cid}:post", "ch:{cid}:sum", "cfg:{cid}", "cfg:{cid}:save", "cfg:{cid}:confirm",
    "cfg:{cid}:t:4:price", "cfg:{cid}:t:1:del", "cfg:{cid}:notify:me", "cfg:{cid}:repost", "cfg:{cid}:discard",
    "cfg:{cid}:cur:eth:eth", "pay:{key}:1", "pay:{key}:7", "invite:{key}", "buy:{key}", "kp:ok", "kp:1",
    "menu:channels", "menu:add", "reg:cancel", "inv:00000000-0000-0000-0000-000000000000", "x" * 64,
]

actions = st.lists(st.one_of(
    # (kind, who, which pair, detail)
    st.tuples(st.just("forge"), st.integers(0, 4), st.integers(0, 1), st.sampled_from(FORGED)),
    st.tuples(st.just("buy"), st.integers(0, 1), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("pay"), st.integers(0, 1), st.just(0), st.just(False)),
    st.tuples(st.just("pay"), st.integers(0, 1), st.just(0), st.just(False)),
    st.tuples(st.just("rights"), st.just(0), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("slow"), st.just(0), st.just(0), st.booleans()),
    # A sale that lands on a pair just paused: opened while live, the right removed, then paid.
    st.tuples(st.just("paused_sale"), st.integers(0, 1), st.integers(0, 1), st.just(False)),
), min_size=4, max_size=12)


@pytest.fixture(scope="module")
def world(database_url, tmp_path_factory):
    running = AuthorityWorld(database_url, tmp_path_factory.mktemp("bot-property"))
    yield running
    running.close()


class Example:
    """Two live pairs, their owners, two buyers and a stranger, all new."""

    def __init__(self, world: AuthorityWorld):
        self.world = world
        n = next(_n)
        self.pairs = [self._pair(f"P{n}x{i}") for i in range(2)]
        self.buyers = [world.telegram.create_user(f"Buyer {n}.{i}") for i in range(2)]
        self.stranger = world.telegram.create_user(f"Stranger {n}")
        # Actors 0-1: buyers; 2: stranger; 3-4: the owners (each forging on the other's pair).
        self.actors = [*self.buyers, self.stranger, self.pairs[0]["owner"], self.pairs[1]["owner"]]
        self.menus = [self._menu(person) for person in self.actors]
        self.invoices: dict[int, str] = {}
        self.log_start = len(world.process.log())
        self._buyer_ids = {b.id for b in self.buyers}

    def _pair(self, name: str) -> dict:
        world = self.world
        owner = world.telegram.create_user(name)
        open_chat = world.telegram.create_channel(f"{name} News", username=f"{name.lower()}_news", creator=owner)
        closed = world.telegram.create_channel(f"{name} VIP", creator=owner)
        world.telegram.add_admin(open_chat, world.telegram.bot)
        world.telegram.add_admin(closed, world.telegram.bot)
        with world.session_factory.begin() as session:
            channel = Channel(key=f"pp{uuid.uuid4().hex[:10]}", owner_user_id=owner.id, open_chat_id=open_chat.id,
                              closed_chat_id=closed.id, open_title=f"{name} News", closed_title=f"{name} VIP",
                              status=ChannelStatus.ACTIVE, payout_currency="usdt", payout_network="trx",
                              payout_address=GOOD_TRX, next_post_at=datetime.now(timezone.utc) + timedelta(days=1))
            channel.tiers.append(Tier(number=1, price_usd=Decimal("5.00"), days=30))
            session.add(channel)
            session.flush()
            return {"owner": owner, "closed": closed, "cid": channel.id, "key": channel.key}

    def _menu(self, person):
        person.send("/start")
        return person.wait_for_message(lambda m: "Welcome" in m.text, timeout=TIMEOUT)

    # ---- the moves ----------------------------------------------------------------------------

    def run(self, kind: str, who: int, which: int, detail) -> None:
        pair = self.pairs[which]
        if kind == "forge":
            actor = self.actors[who]
            if who >= 3:
                pair = self.pairs[1 - (who - 3)]  # an owner forges only on the other owner's pair
            data = detail.format(cid=pair["cid"], key=pair["key"])
            actor.press_forged(self.menus[who], data)
        elif kind == "buy":
            buyer = self.buyers[who]
            buyer.open_deep_link(f"https://t.me/{BOT}?start={pair['key']}-1")
            card = buyer.wait_for_message(lambda m: "Subscription to" in m.text or "not taking" in m.text,
                                          timeout=TIMEOUT)
            if "Subscription to" in card.text:
                presses = [buyer.press(card, text="💳 Pay $5.00") for _ in range(2 if detail else 1)]  # double
                answer = presses[0].wait_for_answer(timeout=TIMEOUT)
                if "Please wait" not in (answer.get("text") or ""):
                    # The invoice, or why not (paused meanwhile, provider refused): any answer will do.
                    buyer.wait_for_message(lambda m: any(s in m.text + str(m.buttons) for s in (
                        "Your invoice", "Try again", "not taking", "Please wait")), timeout=TIMEOUT)
        elif kind == "pay":
            buyer = self.buyers[who]
            with self.world.session_factory() as session:
                invoice = session.scalars(select(Invoice).where(
                    Invoice.buyer_user_id == buyer.id, Invoice.status == InvoiceStatus.PENDING,
                    Invoice.provider_invoice_id.is_not(None)).order_by(Invoice.created_at.desc())).first()
            if invoice is not None:
                self.world.nowpayments.pay(invoice.provider_invoice_id)
        elif kind == "rights":
            self.world.telegram.add_admin(pair["closed"], self.world.telegram.bot, can_invite_users=detail)
        elif kind == "paused_sale":
            self.run("rights", 0, which, True)
            self.run("buy", who, which, False)
            self.run("rights", 0, which, False)
            self.run("pay", who, 0, False)
        elif kind == "slow" and detail:
            self.world.nowpayments.fail_next("/v1/invoice", method="POST", delay=1.5, count=2)

    # ---- what must hold -----------------------------------------------------------------------

    def snapshot(self) -> dict:
        with self.world.session_factory() as session:
            rows = {}
            for pair in self.pairs:
                c = session.get(Channel, pair["cid"])
                tiers = [(t.number, t.price_usd, t.days, t.active) for t in c.tiers]
                audits = session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.channel_id == c.id))
                rows[c.id] = (c.owner_user_id, c.payout_address, c.payout_currency, c.notify_enabled, c.notify_chat_id,
                              c.repost_interval_hours, c.donation_text, c.last_broadcast_requested_at, tiers, audits)
            return rows

    def settle(self) -> None:
        """Every update handled (each actor answers /start after their earlier updates) and jobs done."""
        until(lambda: not self.world.telegram.pending_updates, what="updates fetched")
        for person in self.actors:
            self._menu(person)  # also: no conversation is stuck
        until(self._jobs_idle, what="jobs idle")

    def _jobs_idle(self) -> bool:
        with self.world.session_factory() as session:
            return not session.scalar(select(func.count()).select_from(Job).where(
                Job.state.in_([JobState.QUEUED, JobState.RUNNING]), Job.run_at <= datetime.now(timezone.utc),
                Job.kind.in_(["invite.send", "payment.process", "message.direct", "notification.owner"])))

    def paying_buyers_are_served(self, *, none_waiting: bool) -> None:
        with self.world.session_factory() as session:
            queue = {(w.user_id, w.invoice_id) for w in delivery_queue(session)}
            completed = session.scalars(select(Invoice).where(
                Invoice.buyer_user_id.in_([b.id for b in self.buyers]),
                Invoice.status == InvoiceStatus.COMPLETED)).all()
            if not none_waiting:
                event(f"paid invoices: {len(completed)}")
                event(f"buyers waiting in the delivery queue: {len([q for q in queue if q[0] in self._buyer_ids])}")
            for invoice in completed:
                invite = session.scalars(select(Invite).where(Invite.invoice_id == invoice.id)).first()
                delivered = invite is not None and invite.status in DELIVERED
                assert delivered or (invoice.buyer_user_id, invoice.id) in queue, (invoice.id, invite and invite.status)
                if none_waiting:
                    assert delivered, (invoice.id, invite and invite.status)

    def no_unhandled_errors(self) -> None:
        log = self.world.process.log()[self.log_start:]
        assert "error while handling an update" not in log, log[-3000:]


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(moves=actions)
def test_random_interleavings_keep_every_channel_and_every_buyer_safe(world, moves):
    example = Example(world)
    before = example.snapshot()
    for move in moves:
        example.run(*move)
    example.settle()
    assert example.snapshot() == before
    example.no_unhandled_errors()
    example.paying_buyers_are_served(none_waiting=False)

    for pair in example.pairs:  # the owners put every right back: whoever waits is let in
        world.telegram.add_admin(pair["closed"], world.telegram.bot)
    until(lambda: all(_status(world, p["cid"]) == ChannelStatus.ACTIVE for p in example.pairs),
          what="pairs resumed")
    example.settle()
    example.paying_buyers_are_served(none_waiting=True)
    example.no_unhandled_errors()


def _status(world, cid: int) -> ChannelStatus:
    with world.session_factory() as session:
        return session.get(Channel, cid).status
